"""One replica's part: elect a leader, run the jobs while leading, relay live changes."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import make_url

from app.context import Quarterdeck
from app.replicas.leadership import Leadership, default_replica_id
from app.replicas.locks import lock_for_store
from app.replicas.relay import ChangeRelay

log = logging.getLogger(__name__)


class Replica:
    """Everything a `quarterdeck serve` process runs beside its HTTP server."""

    def __init__(self, qd: Quarterdeck) -> None:
        from app.collection.scheduler import CollectionService

        self.qd = qd
        self.name = qd.config.leader.replica or default_replica_id()
        qd.replica = self.name
        heartbeat_s = qd.config.leader.heartbeat_s
        self._service_class = CollectionService
        self._collection: CollectionService | None = None
        self._guard = threading.Lock()
        lock = lock_for_store(qd.store.url, self.name, timeout_s=heartbeat_s)
        self.leadership = Leadership(
            qd,
            lock,
            replica=self.name,
            heartbeat_s=heartbeat_s,
            on_elected=self._start_jobs,
            on_lost=self._stop_jobs,
        )
        self.relay: ChangeRelay | None = None
        if make_url(qd.store.url).get_backend_name() == "postgresql":
            self.relay = ChangeRelay(qd.store.url, qd.feed, self.name)

    def start(self) -> Replica:
        """Start relaying changes and competing for the leader lock."""
        if self.relay is not None:
            self.relay.start()
        self.leadership.start()
        log.info("replica %s started (%s)", self.name, self.leadership.lock.description)
        return self

    def stop(self) -> None:
        """Stop the jobs, give the lock up, stop relaying."""
        self.leadership.stop()
        self._stop_jobs()
        if self.relay is not None:
            self.relay.stop()

    def _start_jobs(self, leadership: Leadership) -> None:
        with self._guard:
            if self._collection is None:
                self._collection = self._service_class(self.qd, gate=leadership)
                self._collection.start()

    def _stop_jobs(self) -> None:
        with self._guard:
            collection, self._collection = self._collection, None
        if collection is not None:
            collection.stop()
