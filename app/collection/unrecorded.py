"""Passes whose outcome the store refused: kept in memory, shown, and written once it takes them."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

# Per source: enough for the Sources page to tell the story of an outage, small enough not to
# matter. Older outcomes are dropped first, and counted.
HELD_PER_SOURCE = 100


@dataclass(frozen=True)
class RunRecord:
    """What one pass writes: its `collector_runs` row and the source's new status."""

    source: str
    kind: str
    started_at: datetime
    duration_s: float
    ok: bool
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    config_error: bool = False
    # What the collector warns of (SourceWarning.to_json()); None keeps the stored ones.
    warnings: list[dict] | None = None


@dataclass(frozen=True)
class HeldRun:
    """A pass the store could not record, and why not."""

    record: RunRecord
    store_error: str
    # True when the source answered and only storing failed; False when the source failed too.
    collected: bool


class UnrecordedRuns:
    """The last outcomes of each source that the store could not take, oldest first."""

    def __init__(self, per_source: int = HELD_PER_SOURCE) -> None:
        self.per_source = per_source
        self._lock = threading.Lock()
        self._held: dict[str, deque[HeldRun]] = {}
        self._dropped: dict[str, int] = {}

    def hold(self, run: HeldRun) -> None:
        """Keep a pass the store refused; drop the oldest beyond the bound."""
        with self._lock:
            held = self._held.setdefault(run.record.source, deque(maxlen=self.per_source))
            if len(held) == held.maxlen:
                self._dropped[run.record.source] = self._dropped.get(run.record.source, 0) + 1
            held.append(run)

    def held(self, source: str) -> list[HeldRun]:
        """Return the source's held passes, oldest first."""
        with self._lock:
            return list(self._held.get(source, ()))

    def dropped(self, source: str) -> int:
        """Count the source's held passes dropped for the bound since the store last took them."""
        with self._lock:
            return self._dropped.get(source, 0)

    def forget(self, source: str, written: list[HeldRun]) -> None:
        """Let go of passes the store has now recorded (ones held meanwhile stay)."""
        if not written:
            return
        with self._lock:
            held = self._held.get(source)
            if held is None:
                return
            done = {id(run) for run in written}
            remaining = [run for run in held if id(run) not in done]
            held.clear()
            held.extend(remaining)
            if not remaining:
                self._dropped.pop(source, None)
