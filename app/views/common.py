"""Small pieces several views share: the context, source views, fragment rendering."""

from __future__ import annotations

from flask import current_app, render_template, request

from app.collection.registry import configured_sources
from app.context import Quarterdeck
from app.queries.sources import SourceView, source_views


def qd() -> Quarterdeck:
    """Return this process's Quarterdeck context."""
    return current_app.extensions["quarterdeck"]


def current_sources(db) -> list[SourceView]:
    """Return every configured source's status now."""
    ctx = qd()
    return source_views(db, configured_sources(ctx.config, ctx.clock), ctx.clock(), ctx.unrecorded)


def render_page_or_part(page: str, part: str, **context):
    """Render the whole page, or only its live part when htmx asks for it."""
    if request.headers.get("HX-Request"):
        return render_template(part, **context)
    return render_template(page, **context)
