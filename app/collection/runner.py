"""One collection pass: read a source, write what it returned, record how it went."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from app.collection.unrecorded import HeldRun, RunRecord
from app.collection.written import Written
from app.context import Quarterdeck
from app.models import CollectorRun, SourceStatus
from app.queries.services import service_topic
from app.store.balancers import apply_balancer_update
from app.store.catalog import apply_catalog_update
from app.store.idempotency import write_idem_events, write_redis_snapshot
from app.store.metrics import write_alerts, write_push_gauge, write_red, write_targets
from collectors.balancers import BalancerUpdate
from collectors.base import CatalogUpdate, Collector, SourceUnavailable
from collectors.metrics import AlertsUpdate, PushGaugeUpdate, RedUpdate, TargetsUpdate
from collectors.redis_idem import IdemEventsUpdate, RedisSnapshot

log = logging.getLogger(__name__)


def write_catalog_update(db, source: str, update: CatalogUpdate) -> Written:
    """Store a catalog update and name the pages it changed."""
    changes = apply_catalog_update(db, source, update)
    topics: set[str] = set()
    if changes.changed_services:
        topics.add("services")
        topics.update(service_topic(name) for name in changes.changed_services)
    return Written(changes.counts(), frozenset(topics))


def write_balancer_update(db, source: str, update: BalancerUpdate) -> Written:
    """Store a balancer snapshot and name the pages it changed."""
    changes = apply_balancer_update(db, source, update)
    topics: set[str] = set()
    if changes.changed:
        topics.update(("balancers", "push"))
    if changes.services:
        topics.add("services")
        topics.update(service_topic(name) for name in changes.services)
    return Written(changes.counts(), frozenset(topics))


# Record type -> store writer: a new kind of source adds a row here, not a branch.
RECORD_WRITERS: dict[type, Callable[..., Written]] = {
    CatalogUpdate: write_catalog_update,
    BalancerUpdate: write_balancer_update,
    RedUpdate: write_red,
    PushGaugeUpdate: write_push_gauge,
    TargetsUpdate: write_targets,
    AlertsUpdate: write_alerts,
    IdemEventsUpdate: write_idem_events,
    RedisSnapshot: write_redis_snapshot,
}


@dataclass
class PassResult:
    """The outcome of one pass."""

    source: str
    ok: bool
    duration_s: float
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    config_error: bool = False


def run_pass(qd: Quarterdeck, collector: Collector) -> PassResult:
    """Collect once from a source and store the result; never raises for a source failure."""
    started_at = qd.clock()
    start = time.perf_counter()
    topics: set[str] = set()
    try:
        records = collector.collect()
    except SourceUnavailable as exc:
        return _finish(
            qd,
            collector,
            topics,
            _failed(qd, collector, started_at, start, exc.reason, exc.config_error),
        )
    except Exception as exc:
        log.exception("collector %s failed unexpectedly", collector.name)
        reason = f"unexpected error: {type(exc).__name__}: {exc}"
        return _finish(
            qd, collector, topics, _failed(qd, collector, started_at, start, reason, False)
        )
    try:
        counts: dict[str, int] = {}
        with qd.store.session(write=True) as db:
            for record in records:
                writer = RECORD_WRITERS.get(type(record))
                if writer is None:
                    raise TypeError(f"unknown record type {type(record).__name__}")
                written = writer(db, collector.name, record)
                for key, value in written.counts.items():
                    counts[key] = counts.get(key, 0) + value
                topics.update(written.topics)
            duration = time.perf_counter() - start
            warnings = [w.to_json() for w in getattr(collector, "warnings", list)()]
            run = RunRecord(
                collector.name, collector.kind, started_at, duration, True, "", counts,
                warnings=warnings,
            )  # fmt: skip
            held = qd.unrecorded.held(collector.name)
            if _record_with_held(db, held, run):
                topics.add("sources")
        qd.unrecorded.forget(collector.name, held)
        result = PassResult(collector.name, True, duration, counts=counts)
        # A collector that must confirm what it read (a stream's XACK) does so only now.
        committed = getattr(collector, "committed", None)
        if committed is not None:
            committed()
    except Exception as exc:
        # What the collector returned is lost; one that reports changes only must start over.
        log.exception("writing what %s collected failed", collector.name)
        resync = getattr(collector, "resync", None)
        if resync is not None:
            resync()
        reason = f"could not store what was collected: {_describe(exc)}"
        result = _failed(qd, collector, started_at, start, reason, False, collected=True)
    return _finish(qd, collector, topics, result)


def _finish(qd: Quarterdeck, collector: Collector, topics: set[str], result: PassResult):
    labels = {"source": collector.name, "kind": collector.kind}
    qd.metrics.collector_runs.labels(**labels).inc()
    qd.metrics.collector_duration.labels(**labels).observe(result.duration_s)
    if not result.ok:
        qd.metrics.collector_errors.labels(**labels).inc()
    if not result.ok:
        topics.add("sources")
    qd.feed.publish(topics)
    return result


def _failed(
    qd, collector, started_at, start, reason: str, config_error: bool, *, collected: bool = False
) -> PassResult:
    duration = time.perf_counter() - start
    log.warning("source %s unavailable: %s", collector.name, reason)
    record = RunRecord(
        collector.name, collector.kind, started_at, duration, False, reason, {}, config_error
    )
    held = qd.unrecorded.held(collector.name)
    try:
        with qd.store.session(write=True) as db:
            _record_with_held(db, held, record)
        qd.unrecorded.forget(collector.name, held)
    except Exception as exc:  # the store itself is down: keep the outcome until it is back
        log.exception("could not record the failed pass of %s", collector.name)
        qd.unrecorded.hold(HeldRun(record, _describe(exc), collected))
    return PassResult(collector.name, False, duration, error=reason, config_error=config_error)


def _describe(exc: BaseException) -> str:
    """Name a store error by its driver exception and first line."""
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first_line}" if first_line else type(orig).__name__


def _record_with_held(db, held: list[HeldRun], record: RunRecord) -> bool:
    """Write the held passes, oldest first, then this one; return True when the status flipped.

    A held pass also flips what the Sources page shows (it showed the held outcome).
    """
    flipped = bool(held)
    for run in held:
        _record(db, run.record)
    return _record(db, record) or flipped


def _record(db, run: RunRecord) -> bool:
    """Store the run and the source's status; return True when the status or warnings changed."""
    db.add(
        CollectorRun(
            source=run.source,
            kind=run.kind,
            started_at=run.started_at,
            duration_s=run.duration_s,
            ok=run.ok,
            error=run.error,
            counts=run.counts,
        )
    )
    status = db.scalar(select(SourceStatus).where(SourceStatus.name == run.source))
    if status is None:
        status = SourceStatus(name=run.source, kind=run.kind)
        db.add(status)
    flipped = status.ok != run.ok
    # None (a failed pass) keeps the stored warnings: it cannot tell whether they still hold.
    if run.warnings is not None and run.warnings != (status.warnings or []):
        status.warnings = run.warnings
        flipped = True
    status.kind = run.kind
    status.last_run_at = run.started_at
    status.ok = run.ok
    if run.ok:
        status.last_success_at = run.started_at
        status.error_kind = ""
    else:
        status.last_error = run.error
        status.last_error_at = run.started_at
        status.error_kind = "config" if run.config_error else "unavailable"
    return flipped


def record_run(qd: Quarterdeck, run: RunRecord) -> None:
    """Record a scheduled job's run as a pass is recorded; hold it while the store refuses."""
    held = qd.unrecorded.held(run.source)
    try:
        with qd.store.session(write=True) as db:
            flipped = _record_with_held(db, held, run)
        qd.unrecorded.forget(run.source, held)
    except Exception as exc:
        log.exception("could not record the run of %s", run.source)
        qd.unrecorded.hold(HeldRun(run, _describe(exc), False))
        flipped = True
    if flipped or not run.ok:
        qd.feed.publish({"sources"})
