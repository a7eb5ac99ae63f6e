"""Carry change topics between replicas with PostgreSQL LISTEN/NOTIFY, so every page updates.

Each replica forwards the topics published on its own feed as one NOTIFY (coalesced while the
previous one is being sent) and republishes, on its feed, what the others sent. A replica that
was disconnected from the channel cannot know what it missed: on reconnecting it publishes "*"
(refresh everything) to its own pages.
"""

from __future__ import annotations

import json
import logging
import queue
import threading

import psycopg

from app.live import ChangeFeed
from app.replicas.locks import libpq_conninfo

log = logging.getLogger(__name__)
CHANNEL = "quarterdeck_changes"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; a longer change says "*" instead.
MAX_PAYLOAD = 7900
RECONNECT_S = 1.0


def notify_payload(replica: str, topics: frozenset[str]) -> str:
    """The NOTIFY text for these topics, or for "*" when they do not fit."""
    payload = json.dumps({"from": replica, "topics": sorted(topics)})
    if len(payload.encode()) > MAX_PAYLOAD:
        payload = json.dumps({"from": replica, "topics": ["*"]})
    return payload


def topics_from(payload: str, replica: str) -> frozenset[str]:
    """The topics another replica sent (empty for our own or a malformed payload)."""
    try:
        message = json.loads(payload)
    except ValueError:
        return frozenset()
    if not isinstance(message, dict) or message.get("from") == replica:
        return frozenset()
    topics = message.get("topics")
    if not isinstance(topics, list):
        return frozenset()
    return frozenset(t for t in topics if isinstance(t, str))


class ChangeRelay:
    """Two threads, each on its own connection: one sends our changes, one listens for others'."""

    def __init__(self, url: str, feed: ChangeFeed, replica: str) -> None:
        self.conninfo = libpq_conninfo(url)
        self.feed = feed
        self.replica = replica
        self._outbox: queue.SimpleQueue[frozenset[str] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()

    def start(self) -> ChangeRelay:
        """Forward this feed's changes and start listening for the other replicas'."""
        self.feed.forward(self._outbox.put)
        for target, name in ((self._send, "relay-send"), (self._listen, "relay-listen")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        """End both threads."""
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=3)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(
            self.conninfo, autocommit=True, connect_timeout=5, application_name="quarterdeck-relay"
        )

    def _send(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            topics = self._outbox.get()
            if topics is None:
                break
            pending = set(topics)
            while True:  # coalesce what queued up meanwhile into one NOTIFY
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._stop.set()
                    break
                pending |= more
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                payload = notify_payload(self.replica, frozenset(pending))
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except psycopg.Error as exc:
                log.warning("could not tell the other replicas what changed: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(RECONNECT_S)
        if conn is not None:
            conn.close()

    def _listen(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if not first:
                        self.feed.publish({"*"}, relayed=True)
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            topics = topics_from(note.payload, self.replica)
                            if topics:
                                self.feed.publish(topics, relayed=True)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("stopped hearing the other replicas' changes: %s", exc)
                first = False
                self._stop.wait(RECONNECT_S)
