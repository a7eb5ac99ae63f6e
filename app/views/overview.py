"""The Overview page: what is broken right now, what just changed, and whether to trust it."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint
from sqlalchemy import select

from app.auth.access import require
from app.models import HealthTransition, Instance, Service
from app.queries.services import list_services
from app.views.common import current_sources, qd, render_page_or_part

bp = Blueprint("overview", __name__)


@bp.get("/")
@require("viewer")
def index():
    """Show the worst services, the latest transitions and the sources' status."""
    ctx = qd()
    with ctx.store.session() as db:
        services = list_services(db)
        transitions = db.execute(
            select(HealthTransition, Instance.source_id, Instance.node, Service.name)
            .join(Instance, HealthTransition.instance_id == Instance.id)
            .join(Service, HealthTransition.service_id == Service.id)
            .where(HealthTransition.at >= ctx.clock() - timedelta(hours=24))
            .order_by(HealthTransition.at.desc(), HealthTransition.id.desc())
            .limit(20)
        ).all()
        sources = current_sources(db)
    totals = {"services": len(services), "passing": 0, "warning": 0, "critical": 0}
    for service in services:
        if service.health in totals:
            totals[service.health] += 1
    unhealthy = [s for s in services if s.health in ("critical", "warning", "maintenance")]
    return render_page_or_part(
        "overview/index.html",
        "overview/_body.html",
        unhealthy=unhealthy[:25],
        unhealthy_count=len(unhealthy),
        totals=totals,
        transitions=transitions,
        sources=sources,
        stale_sources=[s for s in sources if s.stale],
    )
