"""What a rule watches for (`when`), by name: one set-based query over the whole fleet.

A condition answers "which targets is this true of now, and on what evidence" in a query or
two, never one per service, so a cycle over thousands of services stays cheap. Each can also
say over which stretches of stored history it held (for the 24-hour dry run). Another domain
adds one with `register_rule_condition` (the SLO burn at the end wraps app.queries.slo).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.config import Config
from app.models import (
    Balancer,
    BalancerMember,
    Check,
    HealthTransition,
    Instance,
    ProbeState,
    ProbeTransition,
    Release,
    Service,
    ServiceRedFigure,
    SpanRedMinute,
)
from app.queries.releases import compare_releases
from app.queries.slo import burning_services, slo_prometheus

Found = dict[str, dict[str, Any]]  # target -> evidence ("sources": names it was read from)
# A release older than this is the baseline, not a candidate for rolling back.
RELEASE_WITHIN_H = 24
History = Callable[..., "list[Interval] | None"]  # (db, start, end, params, config)


@dataclass(frozen=True)
class Interval:
    """A stretch of history over which the condition held for a target."""

    target: str
    start_at: datetime
    end_at: datetime
    evidence: dict[str, Any]


@dataclass(frozen=True)
class RuleCondition:
    """A fleet-wide condition: its targets now, its params check, optionally its history."""

    name: str
    target: str  # instance ("service/instance") | service
    description: str
    find: Callable[[Session, datetime, Mapping[str, Any], Config], Found]
    check_params: Callable[[Mapping[str, Any]], str | None]
    history: History | None = None
    # Said when history cannot be replayed (what would be needed).
    history_note: str = ""


RULE_CONDITIONS: dict[str, RuleCondition] = {}


def register_rule_condition(condition: RuleCondition) -> None:
    """Make a condition usable as `when = "<name>"` in `[[rules]]`."""
    RULE_CONDITIONS[condition.name] = condition


def _params_check(allowed: Mapping[str, type | tuple[type, ...]]):
    def check(params: Mapping[str, Any]) -> str | None:
        for key, value in params.items():
            if key not in allowed:
                known = ", ".join(allowed) or "none"
                return f"unknown parameter '{key}' (this condition takes {known})"
            if isinstance(value, bool) or not isinstance(value, allowed[key]):
                return f"{key} has the wrong type"
        ratio = params.get("threshold")
        if ratio is not None and not 0 < ratio < 1:
            return "threshold must be a ratio between 0 and 1"
        source = params.get("source")
        if source is not None and source not in ("prometheus", "spans"):
            return "source must be prometheus or spans"
        return None

    return check


# -- instance critical in Consul while a balancer still sends it traffic ---------------------


def _critical_with_traffic(db: Session, now: datetime, params, config: Config) -> Found:
    rows = db.execute(
        select(
            Service.name,
            Instance.id,
            Instance.source_id,
            Balancer.name.label("balancer"),
            BalancerMember.backend,
            BalancerMember.server,
            BalancerMember.sessions,
        )
        .join(Service, Service.id == Instance.service_id)
        .join(
            BalancerMember,
            and_(BalancerMember.address == Instance.address, BalancerMember.port == Instance.port),
        )
        .join(Balancer, Balancer.id == BalancerMember.balancer_id)
        .where(
            Instance.gone_at.is_(None),
            Instance.source == "consul",
            Instance.health == "critical",
            Instance.maintenance.is_(False),
            Instance.address != "",
            BalancerMember.state == "up",
        )
    ).all()
    found: Found = {}
    ids: dict[int, str] = {}
    for row in rows:
        target = f"{row.name}/{row.source_id}"
        ids[row.id] = target
        evidence = found.setdefault(target, {"consul": "critical", "balancers": [], "checks": []})
        evidence["balancers"].append(
            {
                "balancer": row.balancer,
                "member": f"{row.backend}/{row.server}",
                "state": "up",
                "sessions": row.sessions,
            }  # fmt: skip
        )
    if ids:
        checks = db.execute(
            select(Check.instance_id, Check.name, Check.output).where(
                Check.instance_id.in_(list(ids)), Check.status == "critical"
            )
        ).all()
        for check in checks:
            found[ids[check.instance_id]]["checks"].append(
                {"name": check.name, "output": (check.output or "")[:300]}
            )
    for evidence in found.values():
        evidence["sources"] = ["consul", *sorted({b["balancer"] for b in evidence["balancers"]})]
    return found


def _critical_history(db: Session, start: datetime, end: datetime, params, config) -> list:
    """Critical stretches from the health transitions; the traffic half is judged from now."""
    serving = _critical_with_traffic_members(db)
    rows = db.execute(
        select(
            HealthTransition.instance_id,
            HealthTransition.at,
            HealthTransition.from_state,
            HealthTransition.to_state,
        )  # fmt: skip
        .where(HealthTransition.at >= start, HealthTransition.at <= end)
        .order_by(HealthTransition.instance_id, HealthTransition.at)
    ).all()
    names = dict(serving)
    return _stretches(rows, names, start, end, "critical", current=_current_critical(db, serving))


def _critical_with_traffic_members(db: Session) -> list[tuple[int, str]]:
    rows = db.execute(
        select(Instance.id, Service.name, Instance.source_id)
        .join(Service, Service.id == Instance.service_id)
        .join(
            BalancerMember,
            and_(BalancerMember.address == Instance.address, BalancerMember.port == Instance.port),
        )
        .where(Instance.gone_at.is_(None), Instance.source == "consul", Instance.address != "")
        .distinct()
    ).all()
    return [(r.id, f"{r.name}/{r.source_id}") for r in rows]


def _current_critical(db: Session, serving: list[tuple[int, str]]) -> set[int]:
    ids = [i for i, _ in serving]
    if not ids:
        return set()
    return set(
        db.scalars(select(Instance.id).where(Instance.id.in_(ids), Instance.health == "critical"))
    )


def _stretches(rows, names: Mapping, start, end, bad: str, current: set) -> list[Interval]:
    """Turn ordered transitions (key, at, from, to) into the stretches spent in state `bad`."""
    found: list[Interval] = []
    seen: set = set()
    opened: dict = {}
    for key, at, from_state, to_state in rows:
        if key not in names:
            continue
        if key not in seen:
            seen.add(key)
            if from_state == bad:
                opened[key] = start
        if to_state == bad and key not in opened:
            opened[key] = at
        elif to_state != bad and key in opened:
            found.append(Interval(names[key], opened.pop(key), at, {"state": bad}))
    for key, began in opened.items():
        found.append(Interval(names[key], began, end, {"state": bad}))
    for key in current - seen:  # no transition in the window: the whole window
        if key in names:
            found.append(Interval(names[key], start, end, {"state": bad}))
    return found


register_rule_condition(
    RuleCondition(
        "instance_critical_with_traffic",
        "instance",
        "an instance Consul says is critical while a balancer still has it up",
        _critical_with_traffic,
        _params_check({}),
        _critical_history,
    )
)


# -- error ratio above a threshold -------------------------------------------------------------


def _error_ratio_above(db: Session, now: datetime, params, config: Config) -> Found:
    threshold = float(params.get("threshold", config.verdict.error_ratio))
    min_rate = float(params.get("min_rate_rps", config.verdict.min_rate_rps))
    if params.get("source", "prometheus") == "spans":
        return _span_errors(db, now - timedelta(minutes=5), now, threshold, min_rate)
    rows = db.execute(
        select(
            ServiceRedFigure.service,
            ServiceRedFigure.source,
            ServiceRedFigure.error_ratio,
            ServiceRedFigure.rate_rps,
        ).where(  # fmt: skip
            ServiceRedFigure.error_ratio > threshold,
            func.coalesce(ServiceRedFigure.rate_rps, 0) >= min_rate,
        )
    ).all()
    return {
        row.service: {
            "error_ratio": row.error_ratio,
            "rate_rps": row.rate_rps,
            "threshold": threshold,
            "sources": [row.source],
        }  # fmt: skip
        for row in rows
    }


def _span_errors(db, start, end, threshold: float, min_rate: float) -> Found:
    seconds = max((end - start).total_seconds(), 1)
    rows = db.execute(
        select(
            SpanRedMinute.source,
            func.sum(SpanRedMinute.count).label("count"),
            func.sum(SpanRedMinute.errors).label("errors"),
        )
        .where(
            SpanRedMinute.target == "",
            SpanRedMinute.minute_at >= start,
            SpanRedMinute.minute_at < end,
        )  # fmt: skip
        .group_by(SpanRedMinute.source)
    ).all()
    found: Found = {}
    for row in rows:
        if not row.count or row.count / seconds < min_rate:
            continue
        ratio = row.errors / row.count
        if ratio > threshold:
            found[row.source] = {"error_ratio": round(ratio, 4), "spans": row.count,
                                 "threshold": threshold, "sources": []}  # fmt: skip
    return found


def _span_error_history(db, start, end, params, config: Config) -> list[Interval]:
    """Minutes whose span error ratio passed the threshold, joined into stretches."""
    threshold = float(params.get("threshold", config.verdict.error_ratio))
    min_rate = float(params.get("min_rate_rps", config.verdict.min_rate_rps))
    rows = db.execute(
        select(
            SpanRedMinute.source, SpanRedMinute.minute_at, SpanRedMinute.count, SpanRedMinute.errors
        )  # fmt: skip
        .where(
            SpanRedMinute.target == "",
            SpanRedMinute.minute_at >= start,
            SpanRedMinute.minute_at < end,
        )  # fmt: skip
        .order_by(SpanRedMinute.source, SpanRedMinute.minute_at)
    ).all()
    found: list[Interval] = []
    minute = timedelta(minutes=1)
    current: dict[str, list] = {}
    for row in rows:
        bad = row.count and row.count / 60 >= min_rate and row.errors / row.count > threshold
        open_ = current.get(row.source)
        if bad and open_ and open_[1] == row.minute_at:
            open_[1] = row.minute_at + minute
        else:
            if open_:
                found.append(Interval(row.source, open_[0], open_[1], {"threshold": threshold}))
                current.pop(row.source)
            if bad:
                current[row.source] = [row.minute_at, row.minute_at + minute]
    for source, (began, ended) in current.items():
        found.append(Interval(source, began, ended, {"threshold": threshold}))
    return found


def _error_history(db, start, end, params, config):
    if params.get("source", "prometheus") == "spans":
        return _span_error_history(db, start, end, params, config)
    return None


register_rule_condition(
    RuleCondition(
        "error_ratio_above",
        "service",
        "a service's error ratio above `threshold` (Prometheus RED, or spans)",
        _error_ratio_above,
        _params_check({"threshold": (int, float), "min_rate_rps": (int, float), "source": str}),
        _error_history,
        history_note='Prometheus keeps this history itself: only source = "spans" is replayed',
    )
)


# -- the current release worse than the one before it ---------------------------------------


def _release_worse(db: Session, now: datetime, params, config: Config) -> Found:
    # Only recent releases are candidates: a version that has run for days is the baseline.
    recent = now - timedelta(hours=float(params.get("within_h", RELEASE_WITHIN_H)))
    services = db.scalars(
        select(Release.service)
        .where(Release.started_at >= recent)
        .where((Release.kv_role == "active") | (Release.instances > 0))
        .distinct()
    ).all()
    found: Found = {}
    for service in sorted(services):
        comparison = compare_releases(db, service, now)
        if comparison is None or not comparison["worse"]:
            continue
        if datetime.fromisoformat(comparison["current"]["started_at"]) < recent:
            continue  # a recent release of it, but not the current one
        found[service] = {
            "release": comparison["current"]["version"],
            "previous": comparison["previous"]["version"],
            "worse_in": comparison["worse_in"],
            "figures": {
                f["name"]: {"current": f["current"], "previous": f["previous"]}
                for f in comparison["figures"]
                if f["worse"]
            },
            "sources": [],
        }
    return found


register_rule_condition(
    RuleCondition(
        "release_worse",
        "service",
        "the service's current release (started within `within_h` hours, 24 by default) worse "
        "than the previous one past the comparison's margins (error ratio, p95, idempotency "
        "conflicts, probe availability)",
        _release_worse,
        _params_check({"within_h": (int, float)}),
        history_note="release comparisons are not replayed: each reads the spans, conflicts and "
        "probe results since its release started",
    )
)


# -- a business probe failing -------------------------------------------------------------------


def _probe_failing(db: Session, now: datetime, params, config: Config) -> Found:
    query = select(ProbeState).where(ProbeState.state == "failing")
    if params.get("probe"):
        query = query.where(ProbeState.name == params["probe"])
    found: Found = {}
    for row in db.scalars(query):
        evidence = found.setdefault(row.service, {"probes": [], "sources": [], "stale": []})
        evidence["probes"].append(
            {
                "probe": row.name,
                "status": row.last_status,
                "detail": row.last_detail[:300],
                "since": row.since_at.isoformat(),
            }  # fmt: skip
        )
        if row.fresh_until_at < now:
            evidence["stale"].append(f"probe {row.name}")
    return found


def _probe_history(db, start, end, params, config) -> list[Interval]:
    query = select(
        ProbeTransition.name, ProbeTransition.at, ProbeTransition.from_state,
        ProbeTransition.to_state,
    ).where(ProbeTransition.at >= start, ProbeTransition.at <= end)  # fmt: skip
    states = select(ProbeState.name, ProbeState.service, ProbeState.state)
    if params.get("probe"):
        query = query.where(ProbeTransition.name == params["probe"])
        states = states.where(ProbeState.name == params["probe"])
    known = db.execute(states).all()
    names = {row.name: row.service for row in known}
    current = {row.name for row in known if row.state == "failing"}
    rows = db.execute(query.order_by(ProbeTransition.name, ProbeTransition.at)).all()
    return _stretches(rows, names, start, end, "failing", current)


register_rule_condition(
    RuleCondition(
        "probe_failing",
        "service",
        "a business probe of the service failing (`probe` narrows it to one)",
        _probe_failing,
        _params_check({"probe": str}),
        _probe_history,
    )
)


# -- an SLO burning its error budget too fast ----------------------------------------------------


def _slo_burn(db: Session, now: datetime, params, config: Config) -> Found:
    with slo_prometheus(config) as reader:
        return burning_services(db, now, params, config, prometheus=reader)


def _slo_burn_params(params: Mapping[str, Any]) -> str | None:
    problem = _params_check({"severity": str})(params)
    if problem is None and params.get("severity", "fast") not in ("fast", "slow"):
        return "severity must be fast or slow"
    return problem


register_rule_condition(
    RuleCondition(
        "slo_burn",
        "service",
        "a service's SLO burning its error budget: a multi-window burn-rate alert holds "
        '(`severity` "fast", the default, or "slow" for either)',
        _slo_burn,
        _slo_burn_params,
        history_note="burn rates are not stored: each moment would be judged again over windows "
        "up to the SLO's own, so slo_burn is not replayed",
    )
)
