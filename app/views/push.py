"""The Push page and `/api/v1/push/connections`: who holds the connections, by what source."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.auth.access import require
from app.queries.push.chart import CHART_ID, current_point
from app.queries.push.reading import read_chart, read_push_connections
from app.views.common import current_sources, qd, render_page_or_part

bp = Blueprint("push", __name__)
api_bp = Blueprint("push_api", __name__, url_prefix="/api/v1")

# The source kinds push numbers come from; their stale banners show on the page.
PUSH_SOURCE_KINDS = ("haproxy", "nginx", "prometheus")


def _read(db, now):
    sources = current_sources(db)
    by_name = {s.name: s for s in sources}
    push = read_push_connections(
        db, by_name, now, gauge_configured=qd().config.prometheus is not None
    )
    return push, [s for s in sources if s.kind in PUSH_SOURCE_KINDS]


@bp.get("/push")
@require("viewer")
def index():
    """Show push connections per service and instance, imbalance, drains and the last hour."""
    ctx = qd()
    now = ctx.clock()
    with ctx.store.session() as db:
        push, sources = _read(db, now)
        # The live part appends to the chart already drawn: only the whole page needs the hour.
        chart = None
        if not request.headers.get("HX-Request"):
            chart = read_chart(db, push, now, ctx.config.prometheus)
    return render_page_or_part(
        "push/index.html",
        "push/_body.html",
        push=push,
        sources=sources,
        stale_sources=[s for s in sources if s.stale],
        chart=chart,
        chart_id=CHART_ID,
        chart_point=current_point(push, now),
    )


@api_bp.get("/push/connections")
@require("viewer")
def connections():
    """Return push connections: total, per service and instance, each naming its source."""
    ctx = qd()
    with ctx.store.session() as db:
        push, _ = _read(db, ctx.clock())
    return jsonify(push.to_json())
