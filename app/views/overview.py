"""The Overview page: what is broken right now, what just changed, and whether to trust it."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from flask import Blueprint, abort, current_app, g, render_template, request, url_for
from sqlalchemy import select

from app.auth.access import require
from app.auth.accounts import role_at_least
from app.models import HealthTransition, Instance, Service
from app.queries.disagreements import fleet_disagreements
from app.queries.metrics import alerts_by_service
from app.queries.now import now_lines
from app.queries.services import WINDOW, current_health, is_proxy, service_strips
from app.queries.slo import ALERT_STATES, slo_json
from app.queries.traffic import TRAFFIC_ROWS, busiest_services
from app.queries.verdict import rules_from
from app.rules.listing import waiting_proposals
from app.views.common import current_sources, qd, render_page_or_part
from app.views.services import SPARK_H, SPARK_W, sparkline_points
from app.views.slo import current_slo
from collectors.base import SourceUnavailable
from collectors.prometheus import PrometheusReader, services_red_sparklines

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
        proxies = {s.name for s in rows if is_proxy(s)}
        traffic, traffic_count = busiest_services(db, now, rules, by_name, leave_out=proxies)
    catalog_names = {s.name for s in services}
    for row in traffic:
        row["known"] = row["service"] in catalog_names
        row["spark_id"] = spark_id(row["service"])
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
        traffic=traffic,
        traffic_count=traffic_count,
        traffic_erroring=sum(1 for row in traffic if row["erroring"]),
        traffic_chart_url=url_for(
            "overview.traffic_sparklines", service=[row["service"] for row in traffic]
        ),
    )


def spark_id(service: str) -> str:
    """Return the id of a service's sparkline cell on the Traffic card (any name makes one)."""
    return "traffic-spark-" + hashlib.blake2s(service.encode(), digest_size=8).hexdigest()


# The series the Traffic card draws, kept this long: the live stream re-renders the Overview
# (and so asks for its sparklines again) on every collector pass.
SPARKLINE_CACHE_S = 30.0
OVERVIEW_FIGURES = (("rate_rps", "requests/s", "{:.1f}"), ("error_ratio", "error ratio", "{:.1%}"))


class SparklineCache:
    """Range-query answers by service list, kept for a while; one fetch at a time, so the
    requests that arrive while one fetches wait for its answer instead of asking again."""

    def __init__(self, ttl_s: float = SPARKLINE_CACHE_S):
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[float, object]] = {}

    def get(self, key: tuple, fetch: Callable[[], object]) -> object:
        """Return the answer kept for `key`, or fetch, keep and return a new one."""
        with self._lock:
            now = time.monotonic()
            kept = self._entries.get(key)
            if kept is not None and kept[0] > now:
                return kept[1]
            value = fetch()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[key] = (time.monotonic() + self.ttl_s, value)
            return value


def sparkline_cache() -> SparklineCache:
    """Return this app's sparkline cache."""
    return current_app.extensions.setdefault("quarterdeck.traffic_sparklines", SparklineCache())


@bp.get("/charts/traffic")
@require("viewer")
def traffic_sparklines():
    """Draw the listed services' requests/s and error ratio over the last hour.

    One range query per figure for all of them (cached for SPARKLINE_CACHE_S); the cells go
    into the Traffic card's rows as out-of-band swaps, or read as a list on their own.
    """
    services = list(dict.fromkeys(name for name in request.args.getlist("service") if name))
    if len(services) > TRAFFIC_ROWS:
        abort(400, f"service may be given at most {TRAFFIC_ROWS} times, not {len(services)}")
    ctx = qd()
    config = ctx.config.prometheus
    problem = ""
    lines: dict = {}
    if config is None:
        problem = "No [prometheus] source is configured: there is no history to draw."
    elif services:

        def fetch() -> tuple[dict, str]:
            reader = PrometheusReader(config.url, config.range_timeout_s)
            try:
                return services_red_sparklines(reader, config, services, ctx.clock()), ""
            except SourceUnavailable as exc:
                return {}, f"Prometheus did not answer for the charts: {exc.reason}"
            finally:
                reader.close()

        lines, problem = sparkline_cache().get((config.url, tuple(sorted(services))), fetch)
    rows = []
    for name in services:
        charts = []
        for key, label, fmt in OVERVIEW_FIGURES:
            line = None if problem else sparkline_points(lines.get(key, {}).get(name) or [])
            last = fmt.format(line["last"]) if line else ""
            charts.append({"key": key, "label": label, "line": line, "last": last})
        rows.append({"service": name, "spark_id": spark_id(name), "charts": charts})
    return render_template(
        "overview/_traffic_sparklines.html",
        rows=rows,
        problem=problem,
        width=SPARK_W,
        height=SPARK_H,
    )
