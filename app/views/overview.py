"""The Overview page: what is broken right now, what just changed, and whether to trust it."""

from __future__ import annotations

from flask import Blueprint, g
from sqlalchemy import select

from app.auth.access import require
from app.auth.accounts import role_at_least
from app.models import HealthTransition, Instance, Service
from app.queries.disagreements import fleet_disagreements
from app.queries.metrics import alerts_by_service
from app.queries.now import now_lines
from app.queries.services import WINDOW, current_health, is_proxy, service_strips
from app.queries.slo import ALERT_STATES, slo_json
from app.queries.verdict import rules_from
from app.rules.listing import waiting_proposals
from app.views.common import current_sources, qd, render_page_or_part
from app.views.slo import current_slo

bp = Blueprint("overview", __name__)

ATTENTION_ROWS = 25
DISAGREEMENT_ROWS = 15
ALERT_ROWS = 10
RECENT_TRANSITIONS = 20
SLO_ROWS = 15
# Worst first: the order of the tiles, of Needs attention and of the Services list's badges.
STATES = ("critical", "warning", "maintenance", "unknown", "passing")
# Unknown needs attention too: nothing tells whether it serves.
ATTENTION_STATES = ("critical", "warning", "maintenance", "unknown")


@bp.get("/")
@require("viewer")
def index():
    """Show the worst services, the latest transitions and the sources' status."""
    ctx = qd()
    now = ctx.clock()
    with ctx.store.session() as db:
        rows = current_health(db)
        # Sidecar proxies are plumbing of the service they front: they are not counted.
        services = [s for s in rows if not is_proxy(s)]
        unhealthy = [s for s in services if s.health in ATTENTION_STATES]
        strips = service_strips(db, unhealthy[:ATTENTION_ROWS], now)
        transitions = db.execute(
            select(HealthTransition, Instance.source_id, Instance.node, Service.name)
            .join(Instance, HealthTransition.instance_id == Instance.id)
            .join(Service, HealthTransition.service_id == Service.id)
            .where(HealthTransition.at >= now - WINDOW)
            .order_by(HealthTransition.at.desc(), HealthTransition.id.desc())
            .limit(RECENT_TRANSITIONS)
        ).all()
        sources = current_sources(db)
        by_name = {s.name: s for s in sources}
        failing = [s.name for s in services if s.n_critical or s.n_maintenance]
        rules = rules_from(ctx.config.verdict)
        disagreements, judged = fleet_disagreements(
            db, failing, by_name, now, rules, probes=ctx.config.probes
        )
        proposals = waiting_proposals(db) if ctx.config.rules else []
        slo = [slo_json(state, now) for state in current_slo(ctx, db)]
        alerts = [
            (name, alert)
            for name, found in sorted(alerts_by_service(db).items())
            for alert in found
            if alert.state in ("firing", "active")
        ]
        slo_burning = sum(1 for s in slo if s["state"] in ("fast", "slow"))
        going_on = now_lines(
            db,
            now,
            unhealthy=unhealthy,
            stale_sources=[s for s in sources if s.stale],
            disagreement_count=len(disagreements),
            alert_count=len(alerts),
            proposals=proposals,
            slo_burning=slo_burning,
            storm_per_min=ctx.config.redis.storm_per_min if ctx.config.redis else 10,
        )
    totals = dict.fromkeys(STATES, 0)
    instance_totals = dict.fromkeys(STATES, 0)
    for service in services:
        totals[service.health] = totals.get(service.health, 0) + 1
        checked = 0
        for state in ("passing", "warning", "critical", "maintenance"):
            instance_totals[state] += getattr(service, f"n_{state}")
            checked += getattr(service, f"n_{state}")
        # An instance in none of the four states has no check that says anything.
        instance_totals["unknown"] += service.n_total - checked
    return render_page_or_part(
        "overview/index.html",
        "overview/_body.html",
        states=STATES,
        unhealthy=unhealthy[:ATTENTION_ROWS],
        unhealthy_count=len(unhealthy),
        strips=strips,
        totals=totals,
        instance_totals=instance_totals,
        service_count=len(services),
        instance_count=sum(s.n_total for s in services),
        proxy_count=len(rows) - len(services),
        transitions=transitions,
        sources=sources,
        stale_sources=[s for s in sources if s.stale],
        disagreements=disagreements[:DISAGREEMENT_ROWS],
        disagreement_count=len(disagreements),
        alerts=alerts[:ALERT_ROWS],
        alert_count=len(alerts),
        proposals=proposals,
        can_approve=role_at_least(g.identity.role, "operator"),
        slo=sorted(slo, key=lambda s: (ALERT_STATES.index(s["state"]), s["service"]))[:SLO_ROWS],
        slo_count=len(slo),
        slo_burning=slo_burning,
        going_on=going_on,
    )
