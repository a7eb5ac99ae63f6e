"""The Services list and one service's page."""

from __future__ import annotations

from flask import Blueprint, abort, request

from app.auth.access import require
from app.queries.services import (
    HEALTH_FILTERS,
    ServiceFilter,
    all_tags,
    get_service,
    list_services,
)
from app.views.common import current_sources, qd, render_page_or_part

bp = Blueprint("services", __name__)


def service_filter_from(args) -> ServiceFilter:
    """Read the list filter from query arguments, refusing unknown health values."""
    health = (args.get("health") or "").strip()
    if health and health not in HEALTH_FILTERS:
        abort(400, f"health must be one of {', '.join(HEALTH_FILTERS)}")
    return ServiceFilter(
        search=(args.get("q") or "").strip()[:200],
        health=health,
        tag=(args.get("tag") or "").strip()[:200],
        include_gone=args.get("gone") in ("1", "true", "on"),
    )


@bp.get("/services")
@require("viewer")
def index():
    """List services worst first, with search and filters."""
    flt = service_filter_from(request.args)
    with qd().store.session() as db:
        services = list_services(db, flt)
        tags = all_tags(list_services(db)) if not flt.tag else [flt.tag]
        sources = {s.name: s for s in current_sources(db)}
    stale = [s for s in sources.values() if s.stale]
    return render_page_or_part(
        "services/index.html",
        "services/_table.html",
        services=services,
        flt=flt,
        tags=tags,
        sources=sources,
        stale_sources=stale,
        health_filters=HEALTH_FILTERS,
    )


@bp.get("/services/<path:name>")
@require("viewer")
def detail(name: str):
    """Show one service: its instances, their checks and the recent transitions."""
    ctx = qd()
    with ctx.store.session() as db:
        found = get_service(db, name, ctx.clock())
        if found is None:
            abort(404, f"no service named {name!r} has been seen")
        sources = {s.name: s for s in current_sources(db)}
    return render_page_or_part(
        "services/detail.html",
        "services/_detail_body.html",
        d=found,
        source=sources.get(found.service.source),
        catalog=ctx.config.catalog,
    )
