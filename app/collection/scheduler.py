"""Keep collectors running inside `quarterdeck serve`: the declared jobs and the watch loops."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import undefined

from app.collection.jobs import Job, declared_jobs, forget_removed_probes
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.context import Quarterdeck
from app.models import JobRun
from app.store.leadership import record_job_run
from collectors.base import Collector

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0
# Probes run on their own threads, so a probe waiting out its timeout never delays a
# collector or another probe (up to this many probes running at once).
MAX_PROBE_THREADS = 32


class Gate(Protocol):
    """What a leader election tells the scheduler (app/replicas/leadership.py)."""

    replica: str

    def confirmed(self) -> bool:
        """Tell whether the lock is held, cheaply (checked before each watch pass)."""

    def may_run(self) -> bool:
        """Tell whether a job run may start now (checked before each run)."""

    @property
    def term(self): ...


def job_outcome(result: object) -> tuple[bool, str, dict[str, int]]:
    """Read ok, error and counts from what a job returned (a pass, a run record, a dict)."""
    if isinstance(result, dict):
        return True, "", {k: v for k, v in result.items() if isinstance(v, int)}
    ok = bool(getattr(result, "ok", True))
    error = str(getattr(result, "error", "") or getattr(result, "detail", "") or "")
    counts = getattr(result, "counts", None) or {}
    return ok, "" if ok else error, {k: v for k, v in dict(counts).items() if isinstance(v, int)}


def run_job(qd: Quarterdeck, job: Job, gate: Gate | None = None) -> JobRun | None:
    """Run one declared job and record the run; None when the gate said not to run it."""
    if gate is not None and not gate.may_run():
        log.info("job %s not started: this replica does not hold the leader lock", job.id)
        return None
    term = gate.term if gate is not None else None
    started_at = qd.clock()
    start = time.perf_counter()
    try:
        ok, error, counts = job_outcome(job.func(*job.args))
    except Exception as exc:
        log.exception("job %s failed", job.id)
        ok, error, counts = False, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", {}
    run = JobRun(
        job_id=job.id,
        replica=gate.replica if gate is not None else "",
        term=term.number if term is not None else None,
        started_at=started_at,
        duration_s=time.perf_counter() - start,
        ok=ok,
        error=error[:2000],
        counts=counts,
    )
    try:
        with qd.store.session(write=True) as db:
            record_job_run(db, run)
    except Exception as exc:  # the store is down: the job itself has said so where it could
        log.warning("could not record the run of job %s: %s", job.id, exc)
    return run


class CollectionService:
    """Run every declared job (app/collection/jobs.py) and one watch loop per blocking source.

    With a `gate` (the leader election), each job run and each watch pass starts only while
    this replica holds the leader lock.
    """

    def __init__(self, qd: Quarterdeck, gate: Gate | None = None) -> None:
        self.qd = qd
        self.gate = gate
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watched: list[Collector] = []
        self._executors: set[str] = set()

    def start(self) -> None:
        """Start the watch loops of blocking sources and every declared job."""
        for source in configured_sources(self.qd.config, self.qd.clock):
            collector = source.collector
            if collector is None or not getattr(collector, "blocking", False):
                continue
            thread = threading.Thread(
                target=self._watch,
                args=(collector,),
                name=f"watch-{collector.name}",
                daemon=True,
            )
            self._threads.append(thread)
            self._watched.append(collector)
            thread.start()
        forget_removed_probes(self.qd)
        self.reconcile(declared_jobs(self.qd))
        self.scheduler.start()

    def reconcile(self, jobs: list[Job]) -> None:
        """Make the scheduler hold exactly `jobs`: add new ids, replace changed, drop the rest."""
        wanted = {job.id for job in jobs}
        for existing in self.scheduler.get_jobs():
            if existing.id not in wanted:
                existing.remove()
        probe_jobs = sum(1 for job in jobs if job.executor == "probes")
        if probe_jobs and "probes" not in self._executors:
            workers = min(probe_jobs, MAX_PROBE_THREADS)
            self.scheduler.add_executor(ThreadPoolExecutor(max_workers=workers), "probes")
            self._executors.add("probes")
        for job in jobs:
            self.scheduler.add_job(
                run_job,
                args=(self.qd, job, self.gate),
                **_trigger(job),
                id=job.id,
                name=job.name,
                executor=job.executor,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(job.every_s)),
                # None would add the job paused; undefined lets the trigger pick the first run.
                next_run_time=self.qd.clock() if job.run_at_start else undefined,
            )

    def job_ids(self) -> list[str]:
        """The ids of the jobs scheduled now."""
        return sorted(job.id for job in self.scheduler.get_jobs())

    def _watch(self, collector: Collector) -> None:
        """Run blocking passes back to back; back off with jitter while the source fails."""
        backoff = 0.5
        while not self._stop.is_set():
            if self.gate is not None and not self.gate.confirmed():
                self._stop.wait(0.2)  # the lock is in doubt: no pass until it is confirmed
                continue
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
            # Wait for the jobs running now: one left running past stop() writes to a store
            # its owner is about to dispose (its connection then outlives the pool).
            self.scheduler.shutdown(wait=True)
        for thread in self._threads:
            thread.join(timeout=2)


def _trigger(job: Job) -> dict:
    """APScheduler's trigger arguments: daily at a UTC time (cron), else every `every_s`."""
    if job.daily_at:
        hour, minute = job.daily_at.split(":")
        return {"trigger": "cron", "hour": int(hour), "minute": int(minute), "timezone": "UTC"}
    return {"trigger": "interval", "seconds": job.every_s}
