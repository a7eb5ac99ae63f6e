"""Keep collectors running inside `quarterdeck serve`: APScheduler jobs and watch loops."""

from __future__ import annotations

import logging
import random
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.context import Quarterdeck
from app.store.retention import prune
from collectors.base import Collector

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


class CollectionService:
    """Run one APScheduler job per polled source and one watch loop per blocking source."""

    def __init__(self, qd: Quarterdeck) -> None:
        self.qd = qd
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watched: list[Collector] = []

    def start(self) -> None:
        """Start collecting from every configured source that has a collector."""
        interval = self.qd.config.collect.interval_s
        for source in configured_sources(self.qd.config, self.qd.clock):
            collector = source.collector
            if collector is None:
                continue
            if getattr(collector, "blocking", False):
                thread = threading.Thread(
                    target=self._watch,
                    args=(collector,),
                    name=f"watch-{collector.name}",
                    daemon=True,
                )
                self._threads.append(thread)
                self._watched.append(collector)
                thread.start()
                continue
            self.scheduler.add_job(
                run_pass,
                "interval",
                args=(self.qd, collector),
                seconds=interval,
                id=f"collect:{collector.name}",
                name=f"collect {collector.name}",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=interval,
                next_run_time=self.qd.clock(),
            )
        self.scheduler.add_job(
            self._prune,
            "interval",
            hours=1,
            id="retention",
            name="retention",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=self.qd.clock(),
        )
        self.scheduler.start()

    def _prune(self) -> None:
        with self.qd.store.session(write=True) as db:
            removed = prune(db, self.qd.config.retention, self.qd.clock())
        if any(removed.values()):
            log.info("retention removed %s", removed)

    def _watch(self, collector: Collector) -> None:
        """Run blocking passes back to back; back off with jitter while the source fails."""
        backoff = 0.5
        while not self._stop.is_set():
            result = run_pass(self.qd, collector)
            if result.ok:
                backoff = 0.5
                continue
            # Full jitter keeps many replicas from hammering a recovering source together.
            self._stop.wait(random.uniform(0, backoff))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def stop(self) -> None:
        """Stop the jobs and the watch loops."""
        self._stop.set()
        for source in self._watched:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # ends a pending blocking query early
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for thread in self._threads:
            thread.join(timeout=2)
