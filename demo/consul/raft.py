"""The core every part of the Consul double shares: one lock, a Raft-like index, change wake-ups."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Tables whose "last modified" index Consul keeps and blocking queries fall back on.
TABLES = ("nodes", "services", "checks", "kvs", "sessions")


class RaftState:
    """A monotonically increasing write index, per-table indexes and a condition to wait on."""

    def __init__(self, start_index: int = 10) -> None:
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self.index = start_index
        self.tables: dict[str, int] = dict.fromkeys(TABLES, start_index)
        self._batch_depth = 0
        self._dirty = False
        self._txn: Txn | None = None
        # Run before every read and on every wake-up; each returns its next deadline (monotonic).
        self.housekeepers: list[Callable[[], float | None]] = []

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """Hold the lock for one write; waiters wake at the end if anything changed.

        A transaction opened inside another joins it: like one Raft log entry, a registration
        of a node, its service and checks takes a single index.
        """
        with self.lock:
            if self._txn is not None:
                yield self._txn
                return
            txn = self._txn = Txn(self)
            try:
                yield txn
            finally:
                self._txn = None
                # Even a write that failed half-way must wake waiters for what it did change.
                if txn.wrote:
                    self._dirty = True
                self._wake_if_due()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the lock across many writes and wake waiters once, at the end."""
        with self.lock:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                self._wake_if_due()

    def advance(self) -> int:
        """Take the next index for a write (caller holds the lock)."""
        self.index += 1
        return self.index

    def housekeep(self) -> float | None:
        """Apply time-driven changes (session TTLs); return the earliest next deadline."""
        with self.lock:
            deadlines = [d for d in (keeper() for keeper in self.housekeepers) if d is not None]
            return min(deadlines) if deadlines else None

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Block (lock held, released while waiting) until ready() or the timeout elapses."""
        deadline = time.monotonic() + timeout
        while True:
            next_due = self.housekeep()
            if ready():
                return
            now = time.monotonic()
            if now >= deadline:
                return
            wake_at = deadline if next_due is None else min(deadline, next_due)
            self._changed.wait(max(wake_at - now, 0.001))

    def wake_all(self) -> None:
        """Wake every waiter so it re-checks its condition (used when the listener stops)."""
        with self.lock:
            self._changed.notify_all()

    def _wake_if_due(self) -> None:
        if self._dirty and self._batch_depth == 0:
            self._dirty = False
            self._changed.notify_all()


class Txn:
    """One write: takes a single new index lazily, only if something really changes."""

    def __init__(self, raft: RaftState) -> None:
        self._raft = raft
        self._index: int | None = None

    @property
    def wrote(self) -> bool:
        """Whether this transaction changed anything."""
        return self._index is not None

    @property
    def index(self) -> int:
        """The index of this write, allocated on first use."""
        if self._index is None:
            self._index = self._raft.advance()
        return self._index

    def touch(self, *tables: str) -> int:
        """Mark tables as modified at this write's index and return the index."""
        for table in tables:
            self._raft.tables[table] = self.index
        return self.index
