"""Releases as the API and the service page show them, and the current one against the last.

The comparison reads each release's own stretch of time: the previous release from its start to
the current one's, the current from its start to now. A figure is "worse" past the margins in
WORSE_IF (docs/slo.md, Releases), so noise on a few requests does not offer a rollback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import IdemEventRow, ProbeResultRow, Release
from app.queries.sources import iso
from app.queries.span_red import service_span_red


@dataclass(frozen=True)
class Margin:
    """Worse when the current figure is past the previous one by both a factor and a step."""

    factor: float
    step: float
    higher_is_worse: bool = True


WORSE_IF: dict[str, Margin] = {
    "error_ratio": Margin(1.5, 0.01),  # half as many errors again, and at least 1 point more
    "p95_ms": Margin(1.2, 20.0),  # a fifth slower, and at least 20 ms
    "conflicts_per_h": Margin(1.5, 1.0),  # idempotency conflicts per hour
    "probe_availability": Margin(1.0, 0.01, higher_is_worse=False),  # 1 point less
}
LABELS = {
    "error_ratio": "error ratio",
    "p95_ms": "p95",
    "conflicts_per_h": "idempotency conflicts",
    "probe_availability": "probe availability",
}


def release_json(row: Release) -> dict:
    """One release as `GET /api/v1/releases` lists it."""
    return {
        "service": row.service,
        "version": row.version,
        "started_at": iso(row.started_at),
        "last_seen_at": iso(row.last_seen_at),
        "seen_in": [p for p in row.seen_in.split(",") if p],
        "by": row.by or None,
        "kv_role": row.kv_role or None,
        "instances": row.instances,
    }


def list_releases(
    db: Session, service: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Release], int]:
    """Releases newest first (of one service, if given), and how many there are in all."""
    query = select(Release)
    counted = select(func.count()).select_from(Release)
    if service is not None:
        query = query.where(Release.service == service)
        counted = counted.where(Release.service == service)
    rows = db.scalars(
        query.order_by(Release.started_at.desc(), Release.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), db.scalar(counted) or 0


def current_and_previous(rows: Sequence[Release]) -> tuple[Release | None, Release | None]:
    """Pick the current release and the one before it from a service's releases.

    The releases key decides when it names them (`active`, `previous`); otherwise the current
    is the newest release an instance runs, and the previous the newest that started before it.
    """
    by_version = {r.version: r for r in rows}
    current = next((r for r in rows if r.kv_role == "active"), None)
    if current is None:
        running = [r for r in rows if r.instances]
        current = max(running or rows, key=lambda r: r.started_at, default=None)
    if current is None:
        return None, None
    previous = next((r for r in rows if r.kv_role == "previous" and r is not current), None)
    if previous is None:
        earlier = [r for r in by_version.values() if r.started_at < current.started_at]
        previous = max(earlier, key=lambda r: r.started_at, default=None)
    return current, previous


def _whole_minutes(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The whole minutes within [start, end): span rows hold minutes, and the minute a release
    started in holds both versions' requests, so it counts for neither."""
    floor = start.replace(second=0, microsecond=0)
    first = floor if floor == start else floor + timedelta(minutes=1)
    return first, end.replace(second=0, microsecond=0)


def _conflicts_watched_since(db: Session) -> datetime | None:
    """When the store's idempotency events begin: before that, no conflict could be seen."""
    first_ms = db.scalar(select(func.min(IdemEventRow.at_ms)))
    return None if first_ms is None else datetime.fromtimestamp(first_ms / 1000, tz=UTC)


def _figures(
    db: Session, service: str, start: datetime, end: datetime, watched: datetime | None
) -> dict:
    first, last = _whole_minutes(start, end)
    red = service_span_red(db, service, first, last) if last > first else None
    # Conflicts per hour of the time events were collected in (a fresh store, or Redis added
    # later, has watched only part of an old release's stretch).
    counted_from = max(start, watched) if watched is not None else start
    empty = end <= counted_from
    hours = max((end - counted_from).total_seconds() / 3600, 1 / 60)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    conflicts = 0
    if not empty:
        conflicts = db.scalar(
            select(func.count())
            .select_from(IdemEventRow)
            .where(IdemEventRow.service == service, IdemEventRow.malformed.is_(False))
            .where(IdemEventRow.at_ms >= start_ms, IdemEventRow.at_ms < end_ms)
        )
    passed = func.sum(case((ProbeResultRow.ok.is_(True), 1), else_=0))
    ok, runs = db.execute(
        select(passed, func.count())
        .where(ProbeResultRow.service == service)
        .where(ProbeResultRow.at >= start, ProbeResultRow.at < end)
    ).one()
    return {
        "error_ratio": red.error_ratio if red is not None else None,
        "p95_ms": red.p95_ms if red is not None else None,
        "requests": red.count if red is not None else 0,
        "conflicts": conflicts or 0,
        # No stretch of time observed: no rate (rather than 0 per hour, which reads as better).
        "conflicts_per_h": None if empty else (conflicts or 0) / hours,
        "probe_runs": runs or 0,
        "probe_availability": (ok or 0) / runs if runs else None,
        "from": iso(start),
        "until": iso(end),
    }


def is_worse(key: str, current: float | None, previous: float | None) -> bool:
    """Tell whether the current figure is past the previous one by the key's margin."""
    if current is None or previous is None:
        return False
    margin = WORSE_IF[key]
    if margin.higher_is_worse:
        return current > previous * margin.factor and current - previous >= margin.step
    return current < previous * margin.factor and previous - current >= margin.step


def compare_releases(db: Session, service: str, now: datetime) -> dict | None:
    """The current release against the previous one; None with fewer than two releases."""
    rows, _ = list_releases(db, service, limit=5000)
    current, previous = current_and_previous(rows)
    if current is None or previous is None:
        return None
    # A previous release that started after the current one: the current is an older version
    # active again (a rollback). Its stretch since then is not known, so nothing is compared.
    rolled_back = previous.started_at > current.started_at
    # The previous release's stretch ends where the current one began.
    watched = _conflicts_watched_since(db)
    before = _figures(db, service, previous.started_at, current.started_at, watched)
    after = _figures(db, service, current.started_at, now, watched)
    figures = []
    for key in WORSE_IF:
        figures.append(
            {
                "name": key,
                "label": LABELS[key],
                "current": None if rolled_back else after[key],
                "previous": None if rolled_back else before[key],
                "worse": not rolled_back and is_worse(key, after[key], before[key]),
            }
        )
    return {
        "service": service,
        "current": release_json(current),
        "previous": release_json(previous),
        "rolled_back": rolled_back,
        "figures": figures,
        "evidence": {"current": after, "previous": before},
        "worse": any(f["worse"] for f in figures),
        "worse_in": [f["label"] for f in figures if f["worse"]],
    }
