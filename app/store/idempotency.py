"""Store idempotency events (skipping entry ids already held) and Redis snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.collection.written import Written
from app.models import IdemEventRow, InflightKeyRow, RedisSnapshotRow
from app.store.bulk import bound_value, insert_rows, insert_tuples_skipping
from collectors.redis_idem import IdemEvent, IdemEventsUpdate, RedisSnapshot, paused_gc

# Rows per INSERT statement: large enough to amortise the round trip, small enough for memory.
CHUNK = 5000
# The row's columns: the stream, then IdemEvent's first ten fields in order, then the verdict.
EVENT_COLUMNS = ("stream", *IdemEvent._fields[:10], "malformed", "problems")
UNIQUE = ("stream", "entry_id")


def write_idem_events(db: Session, source: str, update: IdemEventsUpdate) -> Written:
    """Insert the events, skipping any whose stream entry id is already stored. Flush only."""
    events = update.events
    if not events:
        return Written({"events": 0})
    connection = db.connection()
    table = IdemEventRow.__table__
    stream = update.stream
    bad, good = (bound_value(connection, table, "malformed", v) for v in (True, False))
    stored = 0
    with paused_gc():
        for start in range(0, len(events), CHUNK):
            # IdemEvent's fields are in EVENT_COLUMNS' order: one tuple per row, no objects.
            rows = [
                (stream, *e[:10], bad, "; ".join(e.problems)[:500]) if e.problems
                else (stream, *e[:10], good, "")
                for e in events[start : start + CHUNK]
            ]  # fmt: skip
            stored += insert_tuples_skipping(connection, table, EVENT_COLUMNS, rows, UNIQUE)
    malformed = sum(1 for e in events if e.problems)
    counts = {"events": len(events), "events_new": stored, "malformed": malformed}
    return Written(counts, frozenset({"idempotency"}))


def add_idem_event(db: Session, stream: str, event: IdemEvent) -> None:
    """Store one event that came from no Redis stream (Quarterdeck's own keys). Flush only."""
    write_idem_events(db, "quarterdeck", IdemEventsUpdate(stream, datetime.now(UTC), (event,)))


def write_redis_snapshot(db: Session, source: str, snapshot: RedisSnapshot) -> Written:
    """Replace the source's INFO snapshot and in-flight keys with this pass's. Flush only."""
    row = db.get(RedisSnapshotRow, source)
    if row is None:
        row = RedisSnapshotRow(source=source)
        db.add(row)
    row.observed_at = snapshot.observed_at
    for name in (
        "role", "used_memory", "maxmemory", "connected_clients", "blocked_clients",
        "repl_offset", "repl_lag", "master_link_status", "stream_length", "pending",
        "scanned_keys", "scan_complete",
    ):  # fmt: skip
        setattr(row, name, getattr(snapshot, name))
    row.replicas = list(snapshot.replicas)
    db.execute(delete(InflightKeyRow).where(InflightKeyRow.source == source))
    db.flush()
    insert_rows(
        db.connection(),
        InflightKeyRow.__table__,
        [
            {
                "source": source,
                "key": k.key[:512],
                "ttl_left_ms": k.ttl_left_ms,
                "running_ms": k.running_ms,
                "at_risk": k.at_risk,
                "observed_at": snapshot.observed_at,
            }
            for k in snapshot.inflight
        ],
    )
    at_risk = sum(1 for k in snapshot.inflight if k.at_risk)
    return Written(
        {"inflight_keys": len(snapshot.inflight), "at_risk": at_risk}, frozenset({"idempotency"})
    )
