"""Read RED from spans: a service's or an edge's rate, error ratio and p95 over a window.

The rows are what the span RED job keeps (app/store/span_red.py): per-minute rows with a
duration histogram, and the sums of the last 15 minutes for the map's default window. Every
figure is None when no span was seen, never 0.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import SpanRedMinute, SpanRedProgress, SpanRedRecent
from app.models.span_red import BUCKET_BOUNDS_MS, BUCKET_COLUMNS
from app.store.span_red import JOB_NAME, SERVICE

minutes_t = SpanRedMinute.__table__
progress_t = SpanRedProgress.__table__
recent_t = SpanRedRecent.__table__


@dataclass(frozen=True)
class SpanRed:
    """Rate, error ratio and latency of a service or an edge over a window, from spans."""

    count: int
    errors: int
    seconds: float
    buckets: tuple[int, ...]
    duration_max_ms: float

    @property
    def rate_rps(self) -> float | None:
        """Spans per second over the window; None when none was seen."""
        return self.count / self.seconds if self.count and self.seconds > 0 else None

    @property
    def error_ratio(self) -> float | None:
        """Errors over spans, 0-1; None when none was seen."""
        return self.errors / self.count if self.count else None

    def quantile_ms(self, q: float) -> float | None:
        """Interpolate a quantile within its bucket, as Prometheus's histogram_quantile does."""
        return histogram_quantile(q, self.buckets, self.duration_max_ms)

    @functools.cached_property
    def p50_ms(self) -> float | None:
        return self.quantile_ms(0.5)

    @functools.cached_property
    def p95_ms(self) -> float | None:
        return self.quantile_ms(0.95)

    def to_json(self) -> dict:
        """Render the three figures (None when no span was seen, never 0)."""
        return {
            "rate_rps": self.rate_rps,
            "error_ratio": self.error_ratio,
            "p95_ms": self.p95_ms,
        }


def histogram_quantile(q: float, buckets: Sequence[int], max_ms: float) -> float | None:
    """Return the q-quantile (ms) of a bucketed histogram; None when it is empty.

    Linear within the bucket that holds the rank; the open last bucket ends at the largest
    duration seen, and no estimate is above that.
    """
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            lower = BUCKET_BOUNDS_MS[i - 1] if i > 0 else 0.0
            upper = BUCKET_BOUNDS_MS[i] if i < len(BUCKET_BOUNDS_MS) else max(max_ms, lower)
            return min(lower + (upper - lower) * (rank - seen) / n, max(max_ms, lower))
        seen += n
    return max_ms  # pragma: no cover - the loop always reaches the rank


def window_minutes(
    start: datetime, end: datetime, covered: datetime | None = None
) -> tuple[datetime, float]:
    """Return the first minute a window touches and the seconds the rate divides by.

    Rows hold whole minutes, so the rate counts from the first minute's start; it ends where
    the job has read up to (`covered`), if that is earlier than the window's end: the spans
    of the last seconds are not in the rows yet.
    """
    first = start.replace(second=0, microsecond=0)
    last = min(end, covered) if covered is not None and covered > first else end
    return first, max((last - first).total_seconds(), 1.0)


_SUMS = (
    func.sum(minutes_t.c.count).label("count"),
    func.sum(minutes_t.c.errors).label("errors"),
    func.max(minutes_t.c.duration_max_ms).label("duration_max_ms"),
    *(func.sum(minutes_t.c[name]).label(name) for name in BUCKET_COLUMNS),
)


def _figures(row, seconds: float) -> SpanRed:
    return SpanRed(
        int(row.count or 0),
        int(row.errors or 0),
        seconds,
        tuple(int(getattr(row, name) or 0) for name in BUCKET_COLUMNS),
        float(row.duration_max_ms or 0.0),
    )


def red_of(
    session: Session, source: str, target: str, start: datetime, end: datetime
) -> SpanRed | None:
    """Return a service's (`target` "") or an edge's figures over [start, end); None if no span."""
    first, seconds = window_minutes(start, end, covered_until(session))
    row = session.execute(
        select(*_SUMS).where(
            minutes_t.c.source == source,
            minutes_t.c.target == target,
            minutes_t.c.minute_at >= first,
            minutes_t.c.minute_at < end,
        )
    ).one()
    return _figures(row, seconds) if row.count else None


def service_span_red(session: Session, service: str, start: datetime, end: datetime):
    """Return a service's own figures over the window, or None when no span was seen."""
    return red_of(session, service, SERVICE, start, end)


def services_span_red(session: Session, start: datetime, end: datetime) -> dict[str, SpanRed]:
    """Return every service's own figures over the window, by service (one query)."""
    first, seconds = window_minutes(start, end, covered_until(session))
    rows = session.execute(
        select(minutes_t.c.source, *_SUMS)
        .where(
            minutes_t.c.target == SERVICE,
            minutes_t.c.minute_at >= first,
            minutes_t.c.minute_at < end,
        )
        .group_by(minutes_t.c.source)
    )
    return {row.source: _figures(row, seconds) for row in rows if row.count}


def edge_span_red(session: Session, source: str, target: str, start: datetime, end: datetime):
    """Return an edge's figures over the window, or None when no call was seen."""
    return red_of(session, source, target, start, end)


@dataclass(frozen=True)
class SpanRedWindow:
    """Every service's and edge's figures over a window, and the window's real start."""

    services: dict[str, SpanRed]
    edges: dict[tuple[str, str], SpanRed]
    start: datetime  # the first minute summed (a window starts on a whole minute)


@dataclass(frozen=True)
class _Source:
    """Where a window's sums come from: the recent sums, or the minute rows."""

    recent: bool
    first: datetime
    seconds: float


def _source_of(session: Session, start: datetime, end: datetime) -> _Source:
    """A window reaching the present whose first minute is the one `span_red_recent` starts
    at (or the next: the job refreshes it every few seconds) reads that table, one row per
    service and edge; any other window sums the minute rows."""
    progress = session.execute(
        select(progress_t.c.received_ns, progress_t.c.recent_from_at).where(
            progress_t.c.name == JOB_NAME
        )
    ).first()
    covered = datetime.fromtimestamp(progress.received_ns / 1e9, UTC) if progress else None
    first, seconds = window_minutes(start, end, covered)
    recent_from = progress.recent_from_at if progress else None
    if (
        recent_from is not None
        and covered is not None
        and timedelta(0) <= first - recent_from <= timedelta(minutes=1)
        and end >= covered - timedelta(minutes=1)
    ):
        return _Source(True, *window_minutes(recent_from, end, covered))
    return _Source(False, first, seconds)


def span_pairs(session: Session, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """Return the (source, target) of every service ("" target) and edge seen in the window."""
    where = _source_of(session, start, end)
    if where.recent:
        query = select(recent_t.c.source, recent_t.c.target).where(recent_t.c.count > 0)
    else:
        query = (
            select(minutes_t.c.source, minutes_t.c.target)
            .where(minutes_t.c.minute_at >= where.first, minutes_t.c.minute_at < end)
            .distinct()
        )
    return [(row[0], row[1]) for row in session.execute(query)]


def all_span_red(
    session: Session, start: datetime, end: datetime, only: set[str] | None = None
) -> SpanRedWindow:
    """Return every service's and every edge's figures over the window (`only`: those whose
    services are all in the set)."""
    where = _source_of(session, start, end)
    table = recent_t if where.recent else minutes_t
    if where.recent:
        query = select(
            recent_t.c.source,
            recent_t.c.target,
            recent_t.c.count,
            recent_t.c.errors,
            recent_t.c.duration_max_ms,
            *(recent_t.c[name] for name in BUCKET_COLUMNS),
        )
    else:
        query = (
            select(minutes_t.c.source, minutes_t.c.target, *_SUMS)
            .where(minutes_t.c.minute_at >= where.first, minutes_t.c.minute_at < end)
            .group_by(minutes_t.c.source, minutes_t.c.target)
        )
    queries = [query]
    if only is not None:
        names = sorted(only)
        queries = [
            query.where(table.c.source.in_(names[i : i + 500])) for i in range(0, len(names), 500)
        ]
    by_service: dict[str, SpanRed] = {}
    by_edge: dict[tuple[str, str], SpanRed] = {}
    last = 5 + len(BUCKET_COLUMNS)
    for statement in queries:
        for row in session.execute(statement):
            if not row[2] or (only is not None and row[1] and row[1] not in only):
                continue
            figures = SpanRed(row[2], row[3], where.seconds, tuple(row[5:last]), row[4] or 0.0)
            if row[1] == SERVICE:
                by_service[row[0]] = figures
            else:
                by_edge[(row[0], row[1])] = figures
    return SpanRedWindow(by_service, by_edge, where.first)


def covered_until(session: Session) -> datetime | None:
    """Return the receive time up to which spans have been rolled up, or None before any run."""
    received_ns = session.scalar(
        select(progress_t.c.received_ns).where(progress_t.c.name == JOB_NAME)
    )
    return datetime.fromtimestamp(received_ns / 1e9, UTC) if received_ns else None
