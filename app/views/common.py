"""Small pieces several views share: the context, source views, query numbers, fragments."""

from __future__ import annotations

from flask import abort, current_app, render_template, request

from app.collection.registry import configured_sources
from app.context import Quarterdeck
from app.queries.sources import SourceView, source_views
from app.quoting import quote_input

# More digits than this cannot be a count or an offset anyone means.
QUERY_NUMBER_MAX_DIGITS = 9


def qd() -> Quarterdeck:
    """Return this process's Quarterdeck context."""
    return current_app.extensions["quarterdeck"]


def current_sources(db) -> list[SourceView]:
    """Return every configured source's status now."""
    ctx = qd()
    return source_views(db, configured_sources(ctx.config, ctx.clock), ctx.clock(), ctx.unrecorded)


def is_ascii_number(text: str) -> bool:
    """Tell whether the text is one or more ASCII digits (str.isdigit also takes "²" and "١")."""
    return text.isascii() and text.isdigit()


def query_number(
    args, name: str, *, default: int | None = None, minimum: int = 0, maximum: int | None = None
) -> int | None:
    """Read a whole number from the query arguments, or abort with 400 naming the field.

    DESIGN §5: query numbers are ASCII digits; an absent or empty value means the default.
    """
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    number = None
    if is_ascii_number(raw) and len(raw) <= QUERY_NUMBER_MAX_DIGITS:
        number = int(raw)
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        abort(400, f"{name} must be a whole number {bounds} in digits 0-9, not {quote_input(raw)}")
    return number


def render_page_or_part(page: str, part: str, **context):
    """Render the whole page, or only its live part when htmx asks for it."""
    if request.headers.get("HX-Request"):
        return render_template(part, **context)
    return render_template(page, **context)
