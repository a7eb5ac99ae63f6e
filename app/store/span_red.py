"""RED from spans: a job adds new spans into per-minute rows (app/queries/span_red.py reads them).

What is counted (documented in docs/api.md, "RED from spans"):

- A service's own figures count its spans of kind SERVER or CONSUMER (the requests and messages
  it handled) and its root spans of any kind (work nothing called it for: a job, a script, or a
  service whose instrumentation leaves the kind unspecified). CLIENT, PRODUCER and INTERNAL
  spans with a parent are parts of that work, not more of it.
- An edge is counted as Jaeger computes dependencies: a span whose parent is in the same trace
  but in another service is one call parent.service → span.service; same-service pairs are
  skipped. Its duration and error are the child's (the called side's own figures).
- Every span is filed under the minute it started in.

The job reads spans in order of `received_ns`, from a stored watermark up to a little behind now
(`LAG_NS`), so a span whose commit was late is still read. A pair of spans is counted once, when
the later of the two has been received: a child in the window is joined to its parent received
up to the window's end, and a parent in the window to its children received before the window
(the ones earlier runs could not pair).
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.models import Span, SpanRedMinute, SpanRedProgress, SpanRedRecent
from app.models.span_red import BUCKET_BOUNDS_MS, BUCKET_COLUMNS
from app.models.traces import STATUS_ERROR

log = logging.getLogger(__name__)

JOB_NAME = "span_red"
# Read spans received at least this long ago: a writer stamps received_ns before it commits.
LAG_NS = 10 * 1_000_000_000
# Spans per read; the job loops until it has caught up (or its time budget is spent).
BATCH_SPANS = 20_000
SERVICE = ""  # `target` of a service's own row
# The minutes `span_red_recent` sums: the map's default window (15 minutes) reads it.
RECENT_MINUTES = 15
_SERVICE_KINDS = (2, 5)  # OTLP SpanKind SERVER, CONSUMER

minutes_t = SpanRedMinute.__table__
progress_t = SpanRedProgress.__table__
recent_t = SpanRedRecent.__table__
spans_t = Span.__table__


def bucket_of(duration_ms: float) -> int:
    """Return the index of the histogram bucket a duration falls in."""
    return bisect.bisect_left(BUCKET_BOUNDS_MS, duration_ms)


def minute_of(start_ns: int) -> datetime:
    """Return the UTC minute a span started in."""
    return datetime.fromtimestamp((start_ns // 60_000_000_000) * 60, UTC)


@dataclass
class _Cell:
    count: int = 0
    errors: int = 0
    duration_sum_ms: float = 0.0
    duration_max_ms: float = 0.0
    buckets: list[int] | None = None

    def add(self, duration_ns: int, status_code: int) -> None:
        ms = duration_ns / 1e6
        if self.buckets is None:
            self.buckets = [0] * len(BUCKET_COLUMNS)
        self.count += 1
        self.errors += status_code == STATUS_ERROR
        self.duration_sum_ms += ms
        self.duration_max_ms = max(self.duration_max_ms, ms)
        self.buckets[bucket_of(ms)] += 1


@dataclass(frozen=True)
class RollupRun:
    """What one run of the job read and wrote."""

    spans: int
    service_rows: int
    edge_pairs: int
    received_ns: int  # the watermark after the run


class _Rollup:
    """Cells keyed by (minute, source, target), ready to add into the table."""

    def __init__(self) -> None:
        self.cells: dict[tuple[datetime, str, str], _Cell] = {}

    def add(self, start_ns: int, source: str, target: str, duration_ns: int, status: int) -> None:
        key = (minute_of(start_ns), source, target)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = _Cell()
        cell.add(duration_ns, status)

    def rows(self) -> list[dict]:
        return [
            {
                "minute_at": minute,
                "source": source,
                "target": target,
                "count": cell.count,
                "errors": cell.errors,
                "duration_sum_ms": cell.duration_sum_ms,
                "duration_max_ms": cell.duration_max_ms,
                **dict(zip(BUCKET_COLUMNS, cell.buckets or (), strict=True)),
            }
            for (minute, source, target), cell in self.cells.items()
        ]


def _upsert(session: Session, rows: list[dict], table=minutes_t) -> None:
    """Add the rows into the stored ones (sums, and the larger maximum)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    new = insert.excluded
    greatest = func.greatest if dialect == "postgresql" else func.max
    sums = {name: table.c[name] + new[name] for name in ("count", "errors", "duration_sum_ms")}
    sums.update({name: table.c[name] + new[name] for name in BUCKET_COLUMNS})
    sums["duration_max_ms"] = greatest(table.c.duration_max_ms, new.duration_max_ms)
    keys = ["source", "target", "minute_at"] if table is minutes_t else ["source", "target"]
    statement = insert.on_conflict_do_update(index_elements=keys, set_=sums)
    # Sorted, so two writers (never expected: one leader runs jobs) would lock in one order.
    for start in range(0, len(rows), 1000):
        chunk = sorted(rows[start : start + 1000], key=lambda r: (r["source"], r["target"]))
        session.execute(statement, chunk)


def _refresh_recent(session: Session, rows: list[dict], now: datetime) -> None:
    """Keep `span_red_recent` the sums of the minute rows from `RECENT_MINUTES` ago on.

    Within a minute, add this run's cells; when the minute turns, rebuild it from the minute
    rows (exact, the largest duration included, which a subtraction could not keep).
    """
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=RECENT_MINUTES)
    held = session.scalar(select(progress_t.c.recent_from_at).where(progress_t.c.name == JOB_NAME))
    if held == start:
        recent = [
            {k: v for k, v in row.items() if k != "minute_at"}
            for row in rows
            if row["minute_at"] >= start
        ]
        _upsert(session, _summed(recent), recent_t)
        return
    session.execute(delete(recent_t))
    columns = ["source", "target", "count", "errors", "duration_sum_ms", "duration_max_ms"]
    columns += list(BUCKET_COLUMNS)
    summed = (
        select(
            minutes_t.c.source,
            minutes_t.c.target,
            *(
                (func.max if name == "duration_max_ms" else func.sum)(minutes_t.c[name])
                for name in columns[2:]
            ),
        )
        .where(minutes_t.c.minute_at >= start)
        .group_by(minutes_t.c.source, minutes_t.c.target)
    )
    session.execute(recent_t.insert().from_select(columns, summed))
    session.execute(
        progress_t.update().where(progress_t.c.name == JOB_NAME).values(recent_from_at=start)
    )


def _summed(rows: list[dict]) -> list[dict]:
    """Merge rows of one (source, target) from several minutes into one."""
    merged: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["source"], row["target"])
        held = merged.get(key)
        if held is None:
            merged[key] = dict(row)
            continue
        for name, value in row.items():
            if name == "duration_max_ms":
                held[name] = max(held[name], value)
            elif name not in ("source", "target"):
                held[name] += value
    return list(merged.values())


def _watermark(session: Session) -> int:
    found = session.scalar(select(progress_t.c.received_ns).where(progress_t.c.name == JOB_NAME))
    return found or 0


def _set_watermark(session: Session, received_ns: int, now: datetime) -> None:
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(progress_t)
    statement = insert.values(name=JOB_NAME, received_ns=received_ns, updated_at=now)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["name"],
            set_={"received_ns": received_ns, "updated_at": now},
        )
    )


def _batch_end(session: Session, after_ns: int, upto_ns: int, batch: int) -> int:
    """Return the received_ns that ends the next batch; a batch never splits one stamp."""
    nth = session.scalar(
        select(spans_t.c.received_ns)
        .where(spans_t.c.received_ns > after_ns, spans_t.c.received_ns <= upto_ns)
        .order_by(spans_t.c.received_ns)
        .offset(batch - 1)
        .limit(1)
    )
    return upto_ns if nth is None else nth


def roll_up_spans(
    session: Session, now: datetime, *, now_ns: int | None = None, batch: int = BATCH_SPANS
) -> RollupRun:
    """Add one batch of spans received since the watermark into the rows; flush, don't commit.

    `now_ns` is the receive clock (time.time_ns(), as the span store stamps); spans received
    within `LAG_NS` of it wait for the next run.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    after = _watermark(session)
    upto = _batch_end(session, after, now_ns - LAG_NS, batch)
    if upto <= after:
        _set_watermark(session, after, now)
        _refresh_recent(session, [], now)  # the window still slides when traffic stops
        session.flush()
        return RollupRun(0, 0, 0, after)
    rollup = _Rollup()
    window = and_(spans_t.c.received_ns > after, spans_t.c.received_ns <= upto)
    read = session.execute(
        select(
            spans_t.c.service,
            spans_t.c.start_ns,
            spans_t.c.duration_ns,
            spans_t.c.status_code,
            spans_t.c.kind,
            spans_t.c.parent_span_id,
        ).where(window)
    ).all()
    for row in read:
        if row.kind in _SERVICE_KINDS or not row.parent_span_id:
            rollup.add(row.start_ns, row.service, SERVICE, row.duration_ns, row.status_code)
    service_rows = len(rollup.cells)
    pairs = 0
    child, parent = aliased(spans_t, name="child"), aliased(spans_t, name="parent")
    columns = (
        parent.c.service.label("source"),
        child.c.service.label("target"),
        child.c.start_ns,
        child.c.duration_ns,
        child.c.status_code,
    )
    joined = and_(
        parent.c.trace_id == child.c.trace_id,
        parent.c.span_id == child.c.parent_span_id,
        parent.c.service != child.c.service,
    )
    # Children received now, with parents received up to the window's end ...
    late_children = (
        select(*columns)
        .join_from(child, parent, joined)
        .where(
            child.c.received_ns > after,
            child.c.received_ns <= upto,
            child.c.parent_span_id != "",
            parent.c.received_ns <= upto,
        )
    )
    # ... and parents received now, with the children received before the window.
    late_parents = (
        select(*columns)
        .join_from(parent, child, joined)
        .where(
            parent.c.received_ns > after,
            parent.c.received_ns <= upto,
            child.c.received_ns <= after,
        )
    )
    for statement in (late_children, late_parents):
        for row in session.execute(statement):
            rollup.add(row.start_ns, row.source, row.target, row.duration_ns, row.status_code)
            pairs += 1
    rows = rollup.rows()
    _upsert(session, rows)
    _set_watermark(session, upto, now)
    _refresh_recent(session, rows, now)
    session.flush()
    return RollupRun(len(read), service_rows, pairs, upto)


def prune_span_red(session: Session, spans_h: int, now: datetime) -> int:
    """Delete rows older than the spans' retention ([retention] spans_h; 0 keeps forever)."""
    if not spans_h:
        return 0
    cutoff = now - timedelta(hours=spans_h)
    return session.execute(delete(minutes_t).where(minutes_t.c.minute_at < cutoff)).rowcount or 0
