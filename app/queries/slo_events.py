"""Good and bad events of a service over a window, from each kind of SLI (docs/slo.md).

Each reader answers for many services at once: `{service: Events}` over [since, until]. A service
with nothing in the window is absent, so "no data" never reads as "all good".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from app.models import HealthTransition, Instance, ProbeResultRow, Service, SpanRedMinute
from app.models.span_red import BUCKET_BOUNDS_MS, BUCKET_COLUMNS

# Instance states that count for the checks SLI: critical is bad, passing and warning good.
# Maintenance is planned, unknown says nothing and gone is no longer there: none of them count.
COUNTED_STATES = ("passing", "warning", "critical")


@dataclass(frozen=True)
class Events:
    """How many events a window held and how many of them were bad (seconds, for checks)."""

    total: float
    bad: float

    @property
    def bad_ratio(self) -> float | None:
        """The share of bad events (0-1), None when the window held none."""
        return self.bad / self.total if self.total > 0 else None


def probe_events(
    db: Session, services: Sequence[str], since: datetime, until: datetime, latency_ms: float = 0
) -> dict[str, Events]:
    """Probe runs per service: a failed run is bad; with `latency_ms`, a run slower than it is."""
    if not services:
        return {}
    if latency_ms:
        bad = func.sum(case((ProbeResultRow.latency_ms > latency_ms, 1), else_=0))
    else:
        bad = func.sum(case((ProbeResultRow.ok.is_(False), 1), else_=0))
    rows = db.execute(
        select(ProbeResultRow.service, func.count(), bad)
        .where(ProbeResultRow.service.in_(services))
        .where(ProbeResultRow.at > since, ProbeResultRow.at <= until)
        .group_by(ProbeResultRow.service)
    )
    return {name: Events(total, bad or 0) for name, total, bad in rows if total}


def span_events(
    db: Session, services: Sequence[str], since: datetime, until: datetime, latency_ms: float = 0
) -> dict[str, Events]:
    """Server spans per service from the minute rollups: an ERROR span is bad; with
    `latency_ms`, a span slower than it is (interpolated within its histogram bucket)."""
    if not services:
        return {}
    columns = [func.sum(getattr(SpanRedMinute, c)) for c in BUCKET_COLUMNS]
    rows = db.execute(
        select(
            SpanRedMinute.source,
            func.sum(SpanRedMinute.count),
            func.sum(SpanRedMinute.errors),
            *columns,
        )
        .where(SpanRedMinute.target == "", SpanRedMinute.source.in_(services))
        # A minute row holds spans that started in [minute_at, minute_at + 1 min).
        .where(SpanRedMinute.minute_at >= since, SpanRedMinute.minute_at < until)
        .group_by(SpanRedMinute.source)
    )
    found = {}
    for name, total, errors, *buckets in rows:
        if not total:
            continue
        bad = _slower_than(latency_ms, [b or 0 for b in buckets]) if latency_ms else errors or 0
        found[name] = Events(total, bad)
    return found


def _slower_than(threshold_ms: float, buckets: list[int]) -> float:
    """How many of the histogram's events took longer than the threshold."""
    slower = 0.0
    lower = 0.0
    for i, count in enumerate(buckets):
        upper = BUCKET_BOUNDS_MS[i] if i < len(BUCKET_BOUNDS_MS) else float("inf")
        if lower >= threshold_ms:
            slower += count
        elif upper > threshold_ms:
            # The threshold falls inside this bucket: assume its events spread evenly.
            share = 1.0 if upper == float("inf") else (upper - threshold_ms) / (upper - lower)
            slower += count * share
        lower = upper
    return slower


def check_events(
    db: Session, services: Sequence[str], since: datetime, until: datetime
) -> dict[str, Events]:
    """Instance-seconds per service: seconds an instance was critical are bad, passing or
    warning good; maintenance, unknown and gone do not count (COUNTED_STATES)."""
    if not services:
        return {}
    instances = db.execute(
        select(
            Instance.id, Service.name, Instance.health, Instance.maintenance, Instance.first_seen_at
        )
        .join(Service, Instance.service_id == Service.id)
        .where(Service.name.in_(services))
        .where(or_(Instance.gone_at.is_(None), Instance.gone_at > since))
    ).all()
    if not instances:
        return {}
    ids = [row[0] for row in instances]
    moves: dict[int, list[tuple[datetime, str, str]]] = {i: [] for i in ids}
    before: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for instance_id, at, from_state, to_state in db.execute(
            select(
                HealthTransition.instance_id,
                HealthTransition.at,
                HealthTransition.from_state,
                HealthTransition.to_state,
            )
            .where(HealthTransition.instance_id.in_(chunk), HealthTransition.at <= until)
            .order_by(HealthTransition.at, HealthTransition.id)
        ):
            if at <= since:
                before[instance_id] = to_state
            else:
                moves[instance_id].append((at, from_state, to_state))
    found: dict[str, list[float]] = {}
    for instance_id, service, health, maintenance, first_seen_at in instances:
        steps = moves[instance_id]
        if instance_id in before:
            state = before[instance_id]
        elif steps:
            state = steps[0][1]  # no earlier transition: it was what the first one left
        else:
            state = "maintenance" if maintenance else health
        sums = found.setdefault(service, [0.0, 0.0])
        # Before it was first seen an instance was not there, so its seconds do not count.
        at = max(since, first_seen_at) if first_seen_at is not None else since
        for moved_at, _, to_state in [*steps, (until, "", "")]:
            seconds = max((moved_at - at).total_seconds(), 0.0)
            if state in COUNTED_STATES:
                sums[0] += seconds
                if state == "critical":
                    sums[1] += seconds
            at, state = max(at, moved_at), to_state
    return {name: Events(total, bad) for name, (total, bad) in found.items() if total > 0}
