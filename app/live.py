"""Tell open pages what changed: an in-process feed of change topics for Server-Sent Events."""

from __future__ import annotations

import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable


class ChangeFeed:
    """A numbered log of changed topics that readers wait on or subscribe to."""

    def __init__(self, keep: int = 1000) -> None:
        self._cond = threading.Condition()
        self._seq = 0
        self._log: deque[tuple[int, frozenset[str]]] = deque(maxlen=keep)
        self._closed = False
        self._listeners: list[Callable[[], None]] = []
        # Called with the topics of each change made here (not of one relayed from elsewhere).
        self._forwarders: list[Callable[[frozenset[str]], None]] = []
        # Tells a stream id of this process from one of a process that ran before.
        self.epoch = secrets.token_hex(4)

    @property
    def seq(self) -> int:
        """The number of the latest change."""
        return self._seq

    def publish(self, topics: Iterable[str], *, relayed: bool = False) -> int:
        """Record that these topics changed and wake every reader.

        `relayed` marks a change another replica made (app/replicas/relay.py): it is not
        forwarded again.
        """
        topics = frozenset(topics)
        if not topics:
            return self._seq
        with self._cond:
            self._seq += 1
            self._log.append((self._seq, topics))
            self._cond.notify_all()
            seq, listeners = self._seq, list(self._listeners)
            forwarders = [] if relayed else list(self._forwarders)
        for listener in listeners:
            listener()
        for forward in forwarders:
            forward(topics)
        return seq

    def forward(self, forwarder: Callable[[frozenset[str]], None]) -> None:
        """Call `forwarder(topics)` after each change published here (it must be quick)."""
        with self._cond:
            self._forwarders.append(forwarder)

    def changes_since(self, after: int) -> tuple[int, frozenset[str]]:
        """Return the newest seq and the topics changed after `after`, without waiting.

        A reader that fell behind the kept log gets the topic "*" (refresh everything).
        """
        with self._cond:
            return self._changes_since(after)

    def _changes_since(self, after: int) -> tuple[int, frozenset[str]]:
        if self._seq <= after:
            return after, frozenset()
        oldest = self._log[0][0] if self._log else self._seq + 1
        if after + 1 < oldest:
            return self._seq, frozenset({"*"})
        topics: set[str] = set()
        for seq, changed in reversed(self._log):
            if seq <= after:
                break
            topics |= changed
        return self._seq, frozenset(topics)

    def wait(self, after: int, timeout: float) -> tuple[int, frozenset[str]]:
        """Wait until something changed after `after`; return the new seq and the topics.

        The topics are empty on timeout.
        """
        with self._cond:
            if self._seq <= after and not self._closed:
                self._cond.wait(timeout)
            return self._changes_since(after)

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after every publish and at close (in the caller's thread).

        Returns the function that unsubscribes it. A listener must be quick and must not
        publish: it typically hands the news to an event loop.
        """
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def close(self) -> None:
        """Wake every reader so streams can end (at shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    @property
    def closed(self) -> bool:
        """Tell whether the feed is shutting down."""
        return self._closed


class StreamLimitReached(Exception):
    """Opening one more live stream would pass a cap."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(scope, limit)
        self.scope = scope  # "caller" or "server"
        self.limit = limit


class OpenStreams:
    """The live streams open in this process, counted per caller, with the caps on them."""

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller = per_caller
        self.total = total
        self._lock = threading.Lock()
        self._by_caller: Counter[str] = Counter()

    def open(self, caller: str) -> StreamSlot:
        """Take a slot for one more stream of `caller`, or raise StreamLimitReached."""
        with self._lock:
            if self._by_caller[caller] >= self.per_caller:
                raise StreamLimitReached("caller", self.per_caller)
            if sum(self._by_caller.values()) >= self.total:
                raise StreamLimitReached("server", self.total)
            self._by_caller[caller] += 1
        return StreamSlot(self, caller)

    def count(self, caller: str | None = None) -> int:
        """The number of open streams, of one caller or of everyone."""
        with self._lock:
            if caller is not None:
                return self._by_caller[caller]
            return sum(self._by_caller.values())

    def _release(self, caller: str) -> None:
        with self._lock:
            self._by_caller[caller] -= 1
            if self._by_caller[caller] <= 0:
                del self._by_caller[caller]


class StreamSlot:
    """One open stream's place under the caps; released once, when the stream ends."""

    def __init__(self, streams: OpenStreams, caller: str) -> None:
        self.caller = caller
        self._streams = streams
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the place back (idempotent)."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self._streams._release(self.caller)
