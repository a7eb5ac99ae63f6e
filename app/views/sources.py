"""The Sources page: each configured source, its status, last success and last error; and
what is missing (a tool the demo could not run), with how to add it."""

from __future__ import annotations

from flask import Blueprint

from app.auth.access import require
from app.queries.sources import source_hints
from app.views.common import current_sources, qd, render_page_or_part

bp = Blueprint("sources", __name__)


@bp.get("/sources")
@require("viewer")
def index():
    """Show every configured source."""
    with qd().store.session() as db:
        sources = current_sources(db)
    return render_page_or_part(
        "sources/index.html",
        "sources/_table.html",
        sources=sources,
        hints=source_hints(qd().config),
    )
