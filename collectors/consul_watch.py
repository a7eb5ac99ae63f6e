"""One Consul blocking query run in a loop, rate-limited, falling back to slower reads on churn.

Consul's blocking-query guide: a return does not mean something changed, an index that goes
backwards means start over from 0, the index sent must stay >= 1, and the loop must be
rate-limited. When an index moves many times a second (re-registrations anywhere in a big
datacenter, check outputs syncing), waking on every move only re-reads the same answer: the
watch then reads at most once per `churn_interval_s` until the index calms down.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from collectors.base import SourceUnavailable, SourceWarning
from collectors.consul_api import Answer

# Never loop faster than this, even on a quiet index (Consul may return early).
MIN_POLL_INTERVAL_S = 0.05
# Churn: this many index moves within a second starts the slow loop (by default) ...
CHURN_ENTER_MOVES = 5
# ... which ends once the index moved fewer than this many times per second over the window.
CHURN_EXIT_PER_S = 0.5
CHURN_WINDOW_S = 10.0


@dataclass
class WatchState:
    """What the collector reads of a watch, under the collector's lock."""

    index: int
    answer: Answer | None = None
    changed: bool = False
    answers: int = 0
    error: SourceUnavailable | None = None


class Watch:
    """Long-poll one read from an index; hand each new answer over under a shared lock."""

    def __init__(
        self,
        name: str,
        read: Callable[[int, str], Answer],
        *,
        index: int,
        answer: Answer | None = None,
        wait_s: int,
        churn_interval_s: float,
        churn_enter_moves: int = CHURN_ENTER_MOVES,
        cond: threading.Condition,
        stop: threading.Event,
        alive: Callable[[], bool],
        describe: str,
    ) -> None:
        self.name = name
        self.describe = describe
        # The answer the index came with: a filtered one is compared by content too.
        self.state = WatchState(index=max(index, 0), answer=answer)
        self._read = read
        self._wait = f"{max(1, wait_s)}s"
        self.churn_interval_s = churn_interval_s
        self.churn_enter_moves = churn_enter_moves
        self._cond = cond
        self._stop = stop
        self._alive = alive
        self._moves: deque[float] = deque()
        self.churning = False
        self.thread: threading.Thread | None = None

    def start(self, thread_name: str, on_exit: Callable[[], None]) -> None:
        """Run the loop in a daemon thread; `on_exit` runs in that thread when it ends."""

        def run() -> None:
            try:
                self._loop()
            finally:
                on_exit()

        self.thread = threading.Thread(target=run, name=thread_name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set() and self._alive():
            started = time.monotonic()
            try:
                answer = self._read(self.state.index, self._wait)
            except SourceUnavailable as exc:
                with self._cond:
                    if self._alive():
                        self.state.error = exc
                        self._cond.notify_all()
                return
            with self._cond:
                if not self._alive():
                    return
                self._take(answer)
                self._cond.notify_all()
            elapsed = time.monotonic() - started
            interval = self.churn_interval_s if self.churning else MIN_POLL_INTERVAL_S
            if elapsed < interval:
                self._stop.wait(interval - elapsed + random.uniform(0, interval / 4))

    def _take(self, answer: Answer) -> None:
        """Record one answer (caller holds the lock)."""
        state = self.state
        state.answers += 1
        now = time.monotonic()
        if answer.index < state.index:
            # Consul: an index that goes backwards means start over from 0.
            state.index = 0
        elif answer.index == state.index and self._acl_changed(answer):
            # A policy edit changes what a token sees without moving any index.
            state.answer = answer
            state.changed = True
        elif answer.index != state.index:
            # Consul: keep the index at 1 or more (0 would not block).
            state.index = max(answer.index, 1)
            state.answer = answer
            state.changed = True
            self._moves.append(now)
            if not self.churning:
                recent = sum(1 for t in self._moves if t >= now - 1.0)
                self.churning = recent >= self.churn_enter_moves
        self._calm_down(now)

    def _acl_changed(self, answer: Answer) -> bool:
        last = self.state.answer
        if last is None or not (answer.filtered or last.filtered):
            return False
        return answer.filtered != last.filtered or answer.data != last.data

    def _calm_down(self, now: float) -> None:
        moves = self._moves
        while moves and moves[0] < now - CHURN_WINDOW_S:
            moves.popleft()
        if self.churning and len(moves) < CHURN_EXIT_PER_S * CHURN_WINDOW_S:
            self.churning = False

    def warning(self) -> SourceWarning | None:
        """The churn warning while the slow loop is on (caller holds the lock)."""
        now = time.monotonic()
        self._calm_down(now)
        if not self.churning:
            return None
        span = max(now - self._moves[0], 1.0) if self._moves else CHURN_WINDOW_S
        rate = len(self._moves) / span
        return SourceWarning(
            kind="churn",
            read=self.describe,
            message=(
                f"{self.describe}: the index moves about {rate:.0f} times/s; reading it at most "
                f"every {self.churn_interval_s:g} s until it calms down (Consul's "
                "blocking-query guidance: rate-limit the loop)"
            ),
        )

    @property
    def alive(self) -> bool:
        """Whether the loop's thread is still running."""
        return self.thread is not None and self.thread.is_alive()
