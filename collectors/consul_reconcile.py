"""Background reconciliation of registrations: fetch services again, coalesced and rate-limited.

The catalog index moves on every registration anywhere in the datacenter, and a return does
not mean a change, so it is only a hint. Named services (a new name, changed tags, a node that
changed, a check nobody owns) are fetched first; a bare hint queues one sweep over every
service, done in slices at a bounded rate, which skips the answers whose `X-Consul-Index` is
the one already held for that service without decoding them. Sweeps also run every
`sweep_every_s` so outputs of passing checks, which the health watch does not read, stay fresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from collectors.base import SourceUnavailable
from collectors.consul_api import Answer

SLICE = 100
# A sweep reads at most this many services a second; a hint never starts two within this.
SWEEP_RATE_PER_S = 100.0
MIN_SWEEP_INTERVAL_S = 5.0
# After a sweep a hint waits this many times the sweep's own length: under registrations that
# never stop, sweeping takes at most a quarter of the time, and the health path the rest.
SWEEP_REST_FACTOR = 3.0

FetchMany = Callable[[list[str]], dict[str, Answer]]


class Reconciler:
    """Fetch services in the background and hand the answers to `deliver`."""

    def __init__(
        self,
        fetch_many: FetchMany,
        *,
        names: Callable[[], list[str]],
        deliver: Callable[[dict[str, Answer] | SourceUnavailable], None],
        stop: threading.Event,
        alive: Callable[[], bool],
        thread_name: str,
        sweep_every_s: float,
        rate_per_s: float = SWEEP_RATE_PER_S,
        min_sweep_interval_s: float = MIN_SWEEP_INTERVAL_S,
        swept_for_s: float = 0.0,
    ) -> None:
        self._fetch_many = fetch_many
        self._names = names
        self._deliver = deliver
        self._stop = stop
        self._alive = alive
        self._thread_name = thread_name
        self.sweep_every_s = sweep_every_s
        self.rate_per_s = rate_per_s
        self.min_sweep_interval_s = min_sweep_interval_s
        self._cond = threading.Condition()
        self._urgent: set[str] = set()
        self._sweep_wanted = False
        self._sweep: list[str] = []
        self._sweeping = False  # from a sweep's start to the end of its last slice's budget
        # The first hint sweeps at once; the first periodic sweep comes after sweep_every_s.
        self._last_sweep_at = time.monotonic() - min_sweep_interval_s
        # Before this monotonic time a hint does not sweep. The full pass that came just before
        # (`swept_for_s` long) read every service: it rests like a sweep of its own.
        self._hint_sweep_after = time.monotonic() + SWEEP_REST_FACTOR * swept_for_s
        self.thread: threading.Thread | None = None
        self.fetched = 0
        self.sweeps = 0

    def start(self, on_exit: Callable[[], None]) -> None:
        """Run in a daemon thread."""

        def run() -> None:
            try:
                self._loop()
            finally:
                on_exit()

        self.thread = threading.Thread(target=run, name=self._thread_name, daemon=True)
        self.thread.start()

    def urgent(self, names: set[str]) -> None:
        """Fetch these services soon, before any sweep."""
        if names:
            with self._cond:
                self._urgent |= names
                self._cond.notify_all()

    def sweep(self) -> None:
        """Look at every service once more (a pending request absorbs later ones)."""
        with self._cond:
            self._sweep_wanted = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake the loop (to notice a stop)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """Whether work is queued or a sweep is under way."""
        with self._cond:
            return bool(self._urgent or self._sweeping or self._sweep_wanted)

    def _loop(self) -> None:
        while not self._stop.is_set() and self._alive():
            names = self._next_slice()
            if not names:
                continue
            started = time.monotonic()
            try:
                answers = self._fetch_many(names)
            except SourceUnavailable as exc:
                self._deliver(exc)
                return
            self.fetched += len(names)
            self._deliver(answers)
            if self._sweeping:
                # Keep a sweep under its rate; urgent names are not held back.
                deadline = started + len(names) / self.rate_per_s
                with self._cond:
                    self._cond.wait_for(
                        lambda d=deadline: (
                            self._urgent or self._stop.is_set() or time.monotonic() >= d
                        ),
                        max(0.0, deadline - time.monotonic()),
                    )
                    if time.monotonic() >= deadline and not self._sweep:
                        self._sweeping = False
                        ended = time.monotonic()
                        rest = SWEEP_REST_FACTOR * (ended - self._last_sweep_at)
                        self._hint_sweep_after = ended + rest

    def _next_slice(self) -> list[str]:
        with self._cond:
            while not self._stop.is_set() and self._alive():
                now = time.monotonic()
                if self._urgent:
                    names = sorted(self._urgent)[:SLICE]
                    self._urgent.difference_update(names)
                    self._sweep = [n for n in self._sweep if n not in names]
                    return names
                if self._sweep:
                    names, self._sweep = self._sweep[:SLICE], self._sweep[SLICE:]
                    return names
                if now - self._last_sweep_at >= self.sweep_every_s:
                    self._sweep_wanted = True
                periodic = now - self._last_sweep_at >= self.sweep_every_s
                if (
                    self._sweep_wanted
                    and now - self._last_sweep_at >= self.min_sweep_interval_s
                    and (periodic or now >= self._hint_sweep_after)
                ):
                    self._sweep_wanted = False
                    self._last_sweep_at = now
                    self._sweep = sorted(self._names())
                    self._sweeping = True
                    self.sweeps += 1
                    continue
                due = min(
                    self._last_sweep_at + self.sweep_every_s,
                    max(self._last_sweep_at + self.min_sweep_interval_s, self._hint_sweep_after)
                    if self._sweep_wanted
                    else float("inf"),
                )
                self._cond.wait(max(0.01, due - now))
            return []

    @property
    def alive(self) -> bool:
        """Whether its thread is running."""
        return self.thread is not None and self.thread.is_alive()
