"""Elect one replica to run the collectors and jobs; stop them the moment the lock is gone.

Every replica runs a `Leadership` thread. A follower tries the lock every `heartbeat_s`; the
leader runs a heartbeat on the lock's own connection at the same pace. The guarantees
(docs/architecture.md, "Replicas and the leader"):

- A replica starts a job run only while its last good heartbeat was *sent* less than
  `lease_s` ago, so a leader whose heartbeat fails or hangs stops starting runs within
  `lease_s` even before it notices.
- A new leader waits `lease_s` after taking the lock before it starts anything. The lock is
  released only after the old leader's last good heartbeat, so by then the old one has stopped.
- Each leader raises the stored term; a run also checks that its term is still the stored one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.context import Quarterdeck
from app.replicas.locks import LeaderLock
from app.store.leadership import claim_leadership, renew_leadership, term_holds

log = logging.getLogger(__name__)
# How often the leader rewrites its row's renewed_at (pages show a dead leader's age by it).
RENEW_EVERY_S = 5.0


def default_replica_id() -> str:
    """Name this process uniquely: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Term:
    """One stretch of leadership: who, which term number, since when."""

    replica: str
    number: int
    since_at: datetime


class Leadership:
    """Hold (or wait for) the leader lock, and start and stop the jobs with it."""

    def __init__(
        self,
        qd: Quarterdeck,
        lock: LeaderLock,
        *,
        replica: str,
        heartbeat_s: float,
        on_elected: Callable[[Leadership], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.qd = qd
        self.lock = lock
        self.replica = replica
        self.heartbeat_s = heartbeat_s
        # How long a good heartbeat vouches for the lock (one missed beat plus its timeout).
        self.lease_s = 2 * heartbeat_s
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.term: Term | None = None
        self._last_ok = float("-inf")  # monotonic time the last good heartbeat was sent
        self._start_at = float("inf")
        self._started = False
        self._retry_at = 0.0
        self._renewed = 0.0

    # ----- what jobs ask ----------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Tell whether this replica holds the lock and has started (or may start) its jobs."""
        return self.term is not None

    def confirmed(self) -> bool:
        """Tell whether this replica may start a run now: it leads and a heartbeat vouches."""
        return self.term is not None and time.monotonic() - self._last_ok < self.lease_s

    def may_run(self) -> bool:
        """`confirmed()`, and the store still names this term (no one took over meanwhile).

        A store that cannot be read proves nothing about the lock: the heartbeat decides.
        """
        term = self.term
        if term is None or not self.confirmed():
            return False
        try:
            with self.qd.store.session() as db:
                return term_holds(db, term.replica, term.number)
        except Exception as exc:
            log.debug("could not read the leader row (%s); the heartbeat vouches", exc)
            return True

    # ----- the loop ---------------------------------------------------------------------

    def start(self) -> Leadership:
        """Run the election loop in a background thread."""
        self._thread = threading.Thread(target=self._loop, name="leadership", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the jobs (if leading), give the lock up and end the loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._mutex:
            self._lose("shutting down", retry=False)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._mutex:
                if self._stop.is_set():
                    break
                try:
                    self.step()
                except Exception:
                    log.exception("leader election step failed")
            self._stop.wait(self.heartbeat_s)

    def step(self) -> None:
        """One beat: try the lock as a follower, or check it (and maybe start) as the leader."""
        now = time.monotonic()
        if self.term is None:
            if now >= self._retry_at:
                self._try_to_lead(now)
            return
        if not self.lock.check():
            self._lose("the leader lock's connection failed its heartbeat")
            return
        self._last_ok = now
        if not self._started and time.monotonic() >= self._start_at:
            self._started = True
            log.info("replica %s leads (term %d): starting jobs", self.replica, self.term.number)
            self._on_elected(self)
        if time.monotonic() - self._renewed >= RENEW_EVERY_S:
            self._renew()

    def _try_to_lead(self, sent: float) -> None:
        try:
            acquired = self.lock.try_acquire()
        except Exception as exc:
            log.warning("could not try the leader lock (%s): %s", self.lock.description, exc)
            self.lock.close()
            return
        if not acquired:
            return
        try:
            with self.qd.store.session(write=True) as db:
                since = self.qd.clock()
                number = claim_leadership(db, self.replica, since)
        except Exception as exc:
            log.warning("took the leader lock but could not record it (%s); giving it up", exc)
            self.lock.close()
            self._retry_at = time.monotonic() + self.lease_s
            return
        self.term = Term(self.replica, number, since)
        self.qd.metrics.leader.set(1)
        self.qd.metrics.leader_changes.labels("taken").inc()
        self._last_ok = sent
        self._renewed = time.monotonic()
        # The old leader may still be inside its last lease: start only once it has run out.
        self._start_at = sent + self.lease_s
        self._started = False
        log.info(
            "replica %s took the %s (term %d); jobs start in %.1f s",
            self.replica,
            self.lock.description,
            number,
            self.lease_s,
        )
        self.qd.feed.publish({"sources"})

    def _renew(self) -> None:
        term = self.term
        assert term is not None
        try:
            with self.qd.store.session(write=True) as db:
                still = renew_leadership(db, term.replica, term.number, self.qd.clock())
        except Exception as exc:
            log.debug("could not renew the leader row: %s", exc)
            return
        self._renewed = time.monotonic()
        if not still:
            self._lose("another replica's term is recorded")

    def _lose(self, reason: str, *, retry: bool = True) -> None:
        """Stop the jobs first, then give the lock up; try again after one lease."""
        term, self.term = self.term, None
        if term is not None:
            self.qd.metrics.leader.set(0)
            self.qd.metrics.leader_changes.labels("lost").inc()
            log.warning("replica %s stops leading (term %d): %s", self.replica, term.number, reason)
            if self._started:
                try:
                    self._on_lost()
                except Exception:
                    log.exception("stopping the jobs failed")
        self._started = False
        self._start_at = float("inf")
        self.lock.close()
        if term is not None and retry:
            # Let a healthy follower take over rather than grabbing the lock straight back.
            self._retry_at = time.monotonic() + self.lease_s
            self.qd.feed.publish({"sources"})
