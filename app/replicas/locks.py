"""The leader lock: a PostgreSQL session advisory lock, or a file lock beside an SQLite store."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# PostgreSQL advisory locks are per database, so one key serves every Quarterdeck store.
ADVISORY_KEY = int.from_bytes(
    hashlib.sha256(b"quarterdeck:leader").digest()[:8], "big", signed=True
)
APPLICATION_NAME = "quarterdeck-leader"


class LeaderLock(Protocol):
    """What the elector needs from a lock."""

    description: str

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never wait for it."""

    def check(self) -> bool:
        """Tell whether the lock is still ours (the heartbeat)."""

    def close(self) -> None:
        """Give the lock up (idempotent)."""


def libpq_conninfo(url: str) -> str:
    """Turn a SQLAlchemy PostgreSQL URL into a libpq connection string."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


class PostgresAdvisoryLock:
    """`pg_try_advisory_lock` held by one dedicated connection (never one from the pool).

    The lock lives exactly as long as that session: a leader that dies, or whose backend is
    terminated, gives it up at once; `check()` runs a cheap query on the same connection.
    """

    def __init__(self, url: str, replica: str, *, timeout_s: float = 1.0) -> None:
        self.conninfo = libpq_conninfo(url)
        self.replica = replica
        self.timeout_s = timeout_s
        self.description = f"PostgreSQL advisory lock {ADVISORY_KEY}"
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        timeout_ms = max(1, int(self.timeout_s * 1000))
        return psycopg.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=max(2, int(self.timeout_s * 2)),
            application_name=f"{APPLICATION_NAME} {self.replica}"[:63],
            # A cut network must not leave the heartbeat waiting: libpq gives up on unacked
            # data after tcp_user_timeout, and the server drops a dead client (and so the
            # lock) after a few missed keepalives instead of the kernel's two hours.
            keepalives=1,
            keepalives_idle=2,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=timeout_ms * 3,
            options=(
                f"-c statement_timeout={timeout_ms * 2} -c tcp_keepalives_idle=2 "
                "-c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 "
                f"-c tcp_user_timeout={timeout_ms * 3}"
            ),
        )

    def try_acquire(self) -> bool:
        """Take the lock on the dedicated connection (opened on first use)."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
        return bool(row and row[0])

    def check(self) -> bool:
        """Run a query on the lock's session: it answers only while the session (and lock) lives."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            return self._conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error as exc:
            log.warning("leader lock connection lost: %s", exc)
            return False

    def close(self) -> None:
        """Close the session, which releases the lock."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.close()


class FileLock:
    """`flock` on a file beside the SQLite store: held while this process keeps it open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Open the lock file and take an exclusive lock without waiting."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def check(self) -> bool:
        """A flock lasts as long as the descriptor: ours while it is open."""
        return self._fd is not None

    def close(self) -> None:
        """Close the descriptor, which releases the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class ProcessLock:
    """For a store only this process can see (in-memory SQLite): always ours."""

    description = "in-process store"

    def __init__(self) -> None:
        self._held = False

    def try_acquire(self) -> bool:
        """Take the lock."""
        self._held = True
        return True

    def check(self) -> bool:
        """Tell whether it was taken."""
        return self._held

    def close(self) -> None:
        """Give it up."""
        self._held = False


def lock_for_store(url: str, replica: str, *, timeout_s: float = 1.0) -> LeaderLock:
    """The leader lock that fits the store: advisory lock on PostgreSQL, file lock on SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return PostgresAdvisoryLock(url, replica, timeout_s=timeout_s)
    database = parsed.database or ""
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return ProcessLock()
    return FileLock(Path(database).resolve().with_name(Path(database).name + ".leader"))
