"""The Push page and `/api/v1/push/connections`: who holds the connections, by what source."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, jsonify, request, url_for

from app.auth.access import require
from app.queries.push import InstanceCount, PushConnections, ServiceCount
from app.queries.push.chart import CHART_ID, current_point
from app.queries.push.reading import read_chart, read_push_connections
from app.views.common import current_sources, qd, query_number, render_page_or_part

bp = Blueprint("push", __name__)
api_bp = Blueprint("push_api", __name__, url_prefix="/api/v1")

# The source kinds push numbers come from; their stale banners show on the page.
PUSH_SOURCE_KINDS = ("haproxy", "nginx", "prometheus")
# Instance rows the page renders at once; the rest are a "next" link away. Totals, imbalance
# and drains always cover every instance; the API always lists them all.
PAGE_SIZE = 100


@dataclass(frozen=True)
class InstancePage:
    """One page of the per-instance table: its rows grouped under their services."""

    groups: list[tuple[ServiceCount, list[InstanceCount]]]
    offset: int
    shown_to: int
    total: int
    page_size: int = PAGE_SIZE


def instance_page(push: PushConnections, offset: int, size: int = PAGE_SIZE) -> InstancePage:
    """Take `size` instance rows from `offset` in the table's order (service, then instance).

    An offset past the end shows the last page.
    """
    total = push.instance_count
    offset = min(offset, max(total - 1, 0) // size * size)
    groups: list[tuple[ServiceCount, list[InstanceCount]]] = []
    start = 0
    for service in push.services:
        end = start + len(service.instances)
        if end > offset and start < offset + size:
            low, high = max(offset - start, 0), min(offset + size - start, len(service.instances))
            groups.append((service, service.instances[low:high]))
        start = end
    return InstancePage(groups, offset, min(offset + size, total), total, size)


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
    offset = query_number(request.args, "offset", default=0)
    with ctx.store.session() as db:
        push, sources = _read(db, now)
        # The live part appends to the chart already drawn: only the whole page needs the hour.
        chart = None
        if not request.headers.get("HX-Request"):
            chart = read_chart(db, push, now, ctx.config.prometheus)
    page = instance_page(push, offset)
    pages = {}
    if page.offset > 0:
        pages["previous"] = {"offset": max(page.offset - PAGE_SIZE, 0) or None}
    if page.shown_to < page.total:
        pages["next"] = {"offset": page.shown_to}
    return render_page_or_part(
        "push/index.html",
        "push/_body.html",
        push=push,
        sources=sources,
        stale_sources=[s for s in sources if s.stale],
        chart=chart,
        chart_id=CHART_ID,
        chart_point=current_point(push, now),
        rows=page,
        pages=pages,
        live_src=url_for("push.index", offset=page.offset or None),
    )


@api_bp.get("/push/connections")
@require("viewer")
def connections():
    """Return push connections: total, per service and instance, each naming its source."""
    ctx = qd()
    with ctx.store.session() as db:
        push, _ = _read(db, ctx.clock())
    return jsonify(push.to_json())
