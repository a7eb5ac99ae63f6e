"""`GET /api/v1/palette`: what the command palette offers for the text typed so far."""

from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, request, url_for

from app.auth.access import require
from app.auth.accounts import role_at_least
from app.queries.palette import DEFAULT_LIMIT, MAX_LIMIT, MAX_TEXT, PaletteLinks, search_palette
from app.views.common import qd, query_number

api_bp = Blueprint("palette_api", __name__, url_prefix="/api/v1")


def palette_links() -> PaletteLinks:
    """The page URLs palette items point at."""
    return PaletteLinks(
        service=lambda name: url_for("services.detail", name=name),
        instance=lambda name, row_id: url_for("services.detail", name=name) + f"#instance-{row_id}",
        trace=lambda trace_id: url_for("traces.detail", trace_id=trace_id),
        map_focus=lambda name: url_for("map.index", service=name),
        traces_of=lambda name: url_for("traces.index", service=name),
    )


@api_bp.get("/palette")
@require("viewer")
def palette():
    """Return services, instances, recent traces and actions matching `q`, best first."""
    text = request.args.get("q", "")
    if len(text) > MAX_TEXT:
        abort(400, f"q must be at most {MAX_TEXT} characters, not {len(text)}")
    limit = query_number(request.args, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    can_act = role_at_least(g.identity.role, "operator")
    with qd().store.session() as db:
        items = search_palette(db, text, palette_links(), can_act=can_act, limit=limit)
    return jsonify({"query": text, "results": [item.json() for item in items]})
