"""Keep stored spans within their age and row budget ([retention] spans_h, spans_max).

Whole traces go, never single spans, so a kept trace is always complete. Age is absolute: a
trace whose every span is older than `spans_h` goes, whatever it holds. The row budget is a
sampling rule: when more spans are stored than `spans_max`, the oldest traces go first, but a
trace with an error span, or a slow one, is always kept. A trace is slow when it took at least
`slow_ms` (if set) or when it is slower than 95% of the stored traces of its root operation
(`percent_rank() >= 0.95` over the traces with the same root service and operation).

Each function here runs inside the caller's transaction; the job deletes in chunks, one
transaction each, so ingest never waits long for the write lock.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from app.models import Span, Trace

SLOW_PERCENT_RANK = 0.95
NS_PER_HOUR = 3600 * 10**9
NS_PER_MS = 10**6


def stored_span_count(connection: Connection) -> int:
    """Count the stored spans (from the trace summaries, which the write path keeps exact)."""
    return int(connection.execute(select(func.coalesce(func.sum(Trace.span_count), 0))).scalar())


def expired_traces(connection: Connection, now_ns: int, spans_h: int, limit: int) -> list[str]:
    """Return up to `limit` traces whose every span started and ended over `spans_h` ago."""
    cutoff = now_ns - spans_h * NS_PER_HOUR
    rows = connection.execute(
        select(Trace.trace_id)
        .where(Trace.start_ns < cutoff, Trace.end_ns < cutoff)
        .order_by(Trace.start_ns)
        .limit(limit)
    )
    return [trace_id for (trace_id,) in rows]


def traces_over_budget(connection: Connection, excess: int, slow_ms: int) -> list[str]:
    """Return the oldest traces, neither error nor slow, that hold at least `excess` spans.

    Fewer when the traces that may go hold fewer spans than that.
    """
    duration = Trace.end_ns - Trace.start_ns
    rank = (
        func.percent_rank()
        .over(partition_by=(Trace.root_service, Trace.root_operation), order_by=duration)
        .label("rank")
    )
    ranked = select(
        Trace.trace_id, Trace.span_count, Trace.start_ns, Trace.error_count, duration.label("d"),
        rank,
    ).subquery()  # fmt: skip
    query = select(ranked.c.trace_id, ranked.c.span_count).where(
        ranked.c.error_count == 0, ranked.c.rank < SLOW_PERCENT_RANK
    )
    if slow_ms:
        query = query.where(ranked.c.d < slow_ms * NS_PER_MS)
    chosen: list[str] = []
    covered = 0
    # Streamed (a server-side cursor on PostgreSQL): the loop stops long before the last trace.
    rows = connection.execution_options(stream_results=True, max_row_buffer=2000).execute(
        query.order_by(ranked.c.start_ns)
    )
    for trace_id, span_count in rows:
        if covered >= excess:
            break
        chosen.append(trace_id)
        covered += span_count
    rows.close()
    return chosen


def delete_traces(connection: Connection, trace_ids: Sequence[str]) -> int:
    """Delete these traces' spans and summaries; return how many spans went."""
    if not trace_ids:
        return 0
    spans = connection.execute(delete(Span).where(Span.trace_id.in_(trace_ids))).rowcount
    connection.execute(delete(Trace).where(Trace.trace_id.in_(trace_ids)))
    return spans or 0
