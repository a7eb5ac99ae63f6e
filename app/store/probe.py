"""Check that the store takes a write, keeping nothing of it: what /readyz reports."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from app.models.base import utcnow

# How long the probe waits for SQLite's write lock, or PostgreSQL's row lock, before it says
# "busy": short, so a probe never queues behind a long collection pass for long.
LOCK_WAIT_S = 1.0
# PostgreSQL: the probe's whole statement may take this long before it counts as busy.
STATEMENT_TIMEOUT_MS = 2000
# Room the store must still have (SQLite): a write of this size is made and rolled back.
HEADROOM_BYTES = 64 * 1024
MAX_REASON = 200

STATES = ("ok", "busy", "read_only", "full", "unreachable", "no_schema", "error")


@dataclass(frozen=True)
class WriteCheck:
    """The outcome of one write probe."""

    state: str  # one of STATES
    reason: str  # empty when ok
    checked_at: datetime
    busy_since: datetime | None = None

    @property
    def writable(self) -> bool:
        """Whether the store took the write."""
        return self.state == "ok"


class WriteProbe:
    """Probe the store with a write that is undone or changes nothing, one probe at a time."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._lock = threading.Lock()
        self._last: WriteCheck | None = None
        self._generation = 0

    def check(self) -> WriteCheck:
        """Probe now; a caller that arrives while a probe runs gets that probe's answer."""
        generation = self._generation
        with self._lock:
            if self._generation != generation and self._last is not None:
                return self._last  # another caller probed while this one waited
            state, reason = self._probe()
            now = self.clock()
            busy_since = None
            if state == "busy":
                previous = self._last
                busy_since = previous.busy_since if previous and previous.busy_since else now
            self._last = WriteCheck(state, reason[:MAX_REASON], now, busy_since)
            self._generation += 1
            return self._last

    def _probe(self) -> tuple[str, str]:
        try:
            with self.engine.connect() as connection:
                try:
                    if connection.dialect.name == "sqlite":
                        _probe_sqlite(connection.connection.dbapi_connection)
                    else:
                        _probe_postgresql(connection)
                except Exception:
                    # Its state (a PRAGMA, a transaction) is unknown now: never reuse it.
                    connection.invalidate()
                    raise
        except Exception as exc:  # every driver error is an answer here
            return classify(exc)
        return "ok", ""


def _probe_sqlite(raw) -> None:
    """Take the write lock, allocate HEADROOM_BYTES and undo it, then commit a no-op update.

    The allocation meets a full store (SQLITE_FULL, e.g. at `max_page_count`), the commit a
    read-only file or a disk that refuses the journal; nothing stays in the store.
    """
    (timeout_ms,) = raw.execute("PRAGMA busy_timeout").fetchone()
    raw.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_S * 1000)}")
    try:
        raw.execute("BEGIN IMMEDIATE")
        try:
            raw.execute("SAVEPOINT quarterdeck_probe")
            raw.execute("CREATE TABLE quarterdeck_write_probe (b BLOB)")
            raw.execute(
                "INSERT INTO quarterdeck_write_probe VALUES (zeroblob(?))", (HEADROOM_BYTES,)
            )
            raw.execute("ROLLBACK TO quarterdeck_probe")
            raw.execute("RELEASE quarterdeck_probe")
            raw.execute("UPDATE alembic_version SET version_num = version_num")
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={timeout_ms}")


def _probe_postgresql(connection) -> None:
    """Update the schema's version row to itself inside a transaction that is rolled back.

    A read-only database or standby refuses the UPDATE; a lost server fails the connection.
    """
    try:
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(LOCK_WAIT_S * 1000)}")
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
    finally:
        connection.rollback()


# SQLite result codes and PostgreSQL SQLSTATEs (class or full code) → probe states.
SQLITE_STATES = {
    "SQLITE_BUSY": "busy",
    "SQLITE_LOCKED": "busy",
    "SQLITE_READONLY": "read_only",
    "SQLITE_FULL": "full",
    "SQLITE_CANTOPEN": "unreachable",
    "SQLITE_PERM": "read_only",
}
POSTGRESQL_STATES = {
    "25006": "read_only",  # read_only_sql_transaction (also a hot standby)
    "55P03": "busy",  # lock_not_available
    "57014": "busy",  # query_canceled: our statement_timeout
    "42P01": "no_schema",  # undefined_table
    "53": "full",  # insufficient resources: disk full, out of memory
    "08": "unreachable",  # connection exceptions
    "57P": "unreachable",  # admin / crash shutdown, cannot connect now
}
WHAT = {
    "busy": "the store is busy: another writer held the lock for over {wait} s",
    "read_only": "the store is read-only",
    "full": "the store is full",
    "unreachable": "the store cannot be reached",
    "no_schema": "the store has no schema: run `quarterdeck db upgrade`",
    "error": "the store refused a write",
}


def classify(exc: BaseException) -> tuple[str, str]:
    """Name the state a driver error means, and the reason to show."""
    orig = getattr(exc, "orig", None) or exc
    message = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    state = "error"
    name = getattr(orig, "sqlite_errorname", "") or ""
    if name:
        state = next((s for code, s in SQLITE_STATES.items() if name.startswith(code)), "error")
        if "no such table" in message:
            state = "no_schema"
    else:
        sqlstate = getattr(orig, "sqlstate", None) or ""
        for prefix in sorted(POSTGRESQL_STATES, key=len, reverse=True):
            if sqlstate.startswith(prefix):
                state = POSTGRESQL_STATES[prefix]
                break
        else:
            # psycopg gives no SQLSTATE when it could not connect or lost the connection.
            lost = getattr(exc, "connection_invalidated", False) or not sqlstate
            if lost and type(orig).__name__ in ("OperationalError", "InterfaceError"):
                state = "unreachable"
    what = WHAT[state].format(wait=LOCK_WAIT_S)
    return state, f"{what}: {message}" if message else what
