"""Every figure of a handoff report over one period, as plain JSON-ready values.

Each section reads the store once over [start_at, end_at); nothing is sampled or estimated,
so a test can seed rows with known numbers and find them again in the report. The SLO
section is each SLO judged at the period's end over its own window (app.queries.slo).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.config import Config, ReportConfig
from app.models import AuditEntry, BalancerBackendRollup, BalancerRollup, Span
from app.models.traces import STATUS_ERROR
from app.queries.idempotency import ConflictFilters, datetime_to_ms, read_counts, read_top_keys
from app.queries.slo import ALERT_STATES, Objective, slo_prometheus, slo_states
from app.queries.sources import iso
from app.reports.availability import health_figures, one_line, probe_figures

# The push chart divides the period into about this many bars.
CHART_BARS = 48
# Audit rows listed in the report; the CSV and the counts have them all.
ACTIONS_LISTED = 100
# The burn-rate windows an SLO row shows, as the Overview's SLO card does.
SLO_BURN_WINDOWS = ("1h", "6h", "3d")


def build_figures(
    db: Session, config: Config, report: ReportConfig, start_at: datetime, end_at: datetime
) -> dict:
    """Compute every section of the report for [start_at, end_at)."""
    health, health_incidents = health_figures(db, start_at, end_at)
    probes, probe_incidents = probe_figures(db, start_at, end_at)
    availability = []
    for name in sorted(set(health) | set(probes)):
        row = health.get(name) or {
            "service": name, "availability": None, "observed_s": 0.0, "critical_s": 0.0,
            "incidents": 0,
        }  # fmt: skip
        row = {**row, "probes": probes.get(name, [])}
        row["incidents"] += sum(1 for i in probe_incidents if i["service"] == name)
        availability.append(row)
    # Worst first; a service with no observed time at all goes last.
    availability.sort(
        key=lambda r: (r["availability"] is None, r["availability"] or 0, r["service"])
    )
    incidents = sorted(
        health_incidents + probe_incidents, key=lambda i: (i["start_at"], i["service"], i["kind"])
    )
    actions = _actions(db, start_at, end_at)
    conflicts = _conflicts(db, start_at, end_at, report.top)
    push = _push(db, start_at, end_at)
    slowest = _slowest_operations(db, start_at, end_at, report.top)
    slo = _slo(db, config, end_at)
    observed = [r for r in availability if r["availability"] is not None]
    fleet = (
        sum(r["availability"] * r["observed_s"] for r in observed)
        / sum(r["observed_s"] for r in observed)
        if observed and sum(r["observed_s"] for r in observed)
        else None
    )
    return {
        "report": report.name,
        "period": {
            "start_at": iso(start_at),
            "end_at": iso(end_at),
            "hours": round((end_at - start_at).total_seconds() / 3600, 3),
        },
        "summary": {
            "services": len(availability),
            "fleet_availability": fleet,
            "incidents": len(incidents),
            "incidents_ongoing": sum(1 for i in incidents if i["end_at"] is None),
            "critical_s": round(sum(r["critical_s"] for r in availability), 3),
            "actions": actions["total"],
            "conflicts": conflicts["total"],
            "push_peak": push["total_peak"]["connections"] if push["total_peak"] else None,
            "slo_burning": sum(1 for r in slo if r["state"] in ("fast", "slow")) if slo else None,
        },
        "availability": availability,
        "incidents": incidents,
        "actions": actions,
        "conflicts": conflicts,
        "push": push,
        "slowest_operations": slowest,
        "slo": slo,
    }


def _slo(db: Session, config: Config, end_at: datetime) -> list[dict]:
    """Each SLO at the period's end: budget left, burn state and rates; burning first."""
    with slo_prometheus(config) as reader:
        states = slo_states(db, config, end_at, prometheus=reader)
    rows = []
    for state in states:
        slo = state.config
        latency = None
        if state.latency is not None:
            latency = {"threshold_ms": slo.latency_ms, **_objective(state.latency)}
        rows.append(
            {
                "service": slo.service,
                "sli": slo.sli,
                "window_d": slo.window_d,
                "state": state.alert,
                "availability": _objective(state.availability),
                "latency": latency,
                "problem": state.problem,
            }
        )

    def least_left(row: dict) -> float | None:
        lefts = [o["error_budget_left"] for o in (row["availability"], row["latency"]) if o]
        known = [left for left in lefts if left is not None]
        return min(known) if known else None

    rows.sort(
        key=lambda r: (
            ALERT_STATES.index(r["state"]),
            least_left(r) is None,
            least_left(r) or 0,
            r["service"],
        )
    )
    return rows


def _objective(found: Objective) -> dict:
    return {
        "objective": found.objective,
        "error_budget_left": found.error_budget_left,
        "budget_spent": found.budget_spent,
        "state": found.alert,
        "burn_rate": {w: found.burn_rate.get(w) for w in SLO_BURN_WINDOWS},
    }


def _actions(db: Session, start_at: datetime, end_at: datetime) -> dict:
    scope = (AuditEntry.at >= start_at, AuditEntry.at < end_at)
    by_status = {
        status: n
        for status, n in db.execute(
            select(AuditEntry.status, func.count()).where(*scope).group_by(AuditEntry.status)
        )
    }
    rows = db.scalars(
        select(AuditEntry)
        .where(*scope)
        .order_by(AuditEntry.at, AuditEntry.id)
        .limit(ACTIONS_LISTED)
    )
    entries = [
        {
            "id": r.id,
            "at": iso(r.at),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "status": r.status,
            "reason": one_line(r.reason),
            "undo_of": r.undo_of,
        }
        for r in rows
    ]
    return {"total": sum(by_status.values()), "by_status": by_status, "entries": entries}


def _conflicts(db: Session, start_at: datetime, end_at: datetime, top: int) -> dict:
    filters = ConflictFilters(since_ms=datetime_to_ms(start_at), until_ms=datetime_to_ms(end_at))
    counts = read_counts(db, filters)
    keys = read_top_keys(db, filters, limit=top)
    return {
        "total": sum(n for kind, n in counts.items() if kind != "malformed"),
        "counts": counts,
        "top": [
            {"service": k.service, "key": k.key, "count": k.count, "kinds": list(k.kinds)}
            for k in keys
        ],
    }


def _push(db: Session, start_at: datetime, end_at: datetime) -> dict:
    """Peaks of the balancers' per-minute session rollups, per backend and in all."""
    t = BalancerBackendRollup
    scope = (t.minute_at >= start_at, t.minute_at < end_at)
    peaks = []
    for balancer, backend, peak in db.execute(
        select(t.balancer, t.backend, func.max(t.sessions_last))
        .where(*scope)
        .group_by(t.balancer, t.backend)
    ):
        at = db.scalar(
            select(t.minute_at)
            .where(*scope, t.balancer == balancer, t.backend == backend, t.sessions_last == peak)
            .order_by(t.minute_at)
            .limit(1)
        )
        peaks.append({"balancer": balancer, "backend": backend, "connections": peak, "at": iso(at)})
    # Balancers that count only their whole (nginx open source) keep a total row instead.
    r = BalancerRollup
    for balancer, peak in db.execute(
        select(r.balancer, func.max(r.sessions_max))
        .where(r.minute_at >= start_at, r.minute_at < end_at, r.backend == "", r.server == "")
        .group_by(r.balancer)
    ):
        at = db.scalar(
            select(r.minute_at)
            .where(r.minute_at >= start_at, r.minute_at < end_at, r.backend == "", r.server == "")
            .where(r.balancer == balancer, r.sessions_max == peak)
            .order_by(r.minute_at)
            .limit(1)
        )
        peaks.append({"balancer": balancer, "backend": "", "connections": peak, "at": iso(at)})
    peaks.sort(key=lambda p: (-p["connections"], p["balancer"], p["backend"]))
    minutes = db.execute(
        select(t.minute_at, func.sum(t.sessions_last)).where(*scope).group_by(t.minute_at)
    ).all()
    total_peak = None
    if minutes:
        at, value = max(minutes, key=lambda m: (m[1], -m[0].timestamp()))
        total_peak = {"connections": int(value), "at": iso(at)}
    return {"peaks": peaks, "total_peak": total_peak, "chart": _chart(minutes, start_at, end_at)}


def _chart(minutes, start_at: datetime, end_at: datetime) -> list[dict]:
    """The period cut into about CHART_BARS bars: each bar's highest all-backend total."""
    seconds = max(60.0, (end_at - start_at).total_seconds())
    bucket_s = max(60, int(-(-seconds // CHART_BARS)))
    bars = int(-(-seconds // bucket_s))
    highest: list[int | None] = [None] * bars
    for at, value in minutes:
        index = int((at - start_at).total_seconds() // bucket_s)
        if 0 <= index < bars:
            highest[index] = max(highest[index] or 0, int(value))
    return [
        {"at": iso(start_at + timedelta(seconds=i * bucket_s)), "connections": v}
        for i, v in enumerate(highest)
    ]


def _slowest_operations(db: Session, start_at: datetime, end_at: datetime, top: int) -> list[dict]:
    """Operations (service, span name) by mean duration, with p95, maximum and slowest trace."""
    start_ns = int(start_at.timestamp() * 1e9)
    end_ns = int(end_at.timestamp() * 1e9)
    scope = (Span.start_ns >= start_ns, Span.start_ns < end_ns)
    mean = (func.sum(Span.duration_ns) / func.count()).label("mean_ns")
    errors = func.sum(case((Span.status_code == STATUS_ERROR, 1), else_=0))
    rows = db.execute(
        select(Span.service, Span.name, func.count(), errors, mean, func.max(Span.duration_ns))
        .where(*scope)
        .group_by(Span.service, Span.name)
        .order_by(mean.desc(), Span.service, Span.name)
        .limit(top)
    ).all()
    found = []
    for service, name, count, n_errors, mean_ns, max_ns in rows:
        same = (*scope, Span.service == service, Span.name == name)
        # The nearest-rank p95: the value that 5% of the spans (rounded down) are slower than.
        p95_ns = db.scalar(
            select(Span.duration_ns)
            .where(*same)
            .order_by(Span.duration_ns.desc())
            .offset(count // 20)
            .limit(1)
        )
        trace_id = db.scalar(
            select(Span.trace_id).where(*same).order_by(Span.duration_ns.desc()).limit(1)
        )
        found.append(
            {
                "service": service,
                "operation": name,
                "count": count,
                "errors": int(n_errors or 0),
                "mean_ms": round(float(mean_ns) / 1e6, 3),
                "p95_ms": round(p95_ns / 1e6, 3),
                "max_ms": round(max_ns / 1e6, 3),
                "slowest_trace_id": trace_id,
            }
        )
    return found
