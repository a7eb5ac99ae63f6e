"""Tell open pages what changed: an in-process feed of change topics for Server-Sent Events."""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Iterable


class ChangeFeed:
    """A numbered log of changed topics that readers wait on."""

    def __init__(self, keep: int = 1000) -> None:
        self._cond = threading.Condition()
        self._seq = 0
        self._log: deque[tuple[int, frozenset[str]]] = deque(maxlen=keep)
        self._closed = False
        # Tells a stream id of this process from one of a process that ran before.
        self.epoch = secrets.token_hex(4)

    @property
    def seq(self) -> int:
        """The number of the latest change."""
        return self._seq

    def publish(self, topics: Iterable[str]) -> int:
        """Record that these topics changed and wake every reader."""
        topics = frozenset(topics)
        if not topics:
            return self._seq
        with self._cond:
            self._seq += 1
            self._log.append((self._seq, topics))
            self._cond.notify_all()
            return self._seq

    def wait(self, after: int, timeout: float) -> tuple[int, frozenset[str]]:
        """Wait until something changed after `after`; return the new seq and the topics.

        The topics are empty on timeout. A reader that fell behind the kept log gets
        the topic "*" (refresh everything).
        """
        with self._cond:
            if self._seq <= after and not self._closed:
                self._cond.wait(timeout)
            if self._seq <= after:
                return after, frozenset()
            oldest = self._log[0][0] if self._log else self._seq + 1
            if after + 1 < oldest:
                return self._seq, frozenset({"*"})
            topics: set[str] = set()
            for seq, changed in self._log:
                if seq > after:
                    topics |= changed
            return self._seq, frozenset(topics)

    def close(self) -> None:
        """Wake every reader so streams can end (at shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Tell whether the feed is shutting down."""
        return self._closed
