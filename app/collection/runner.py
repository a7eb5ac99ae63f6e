"""One collection pass: read a source, write what it returned, record how it went."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from app.context import Quarterdeck
from app.models import CollectorRun, SourceStatus
from app.queries.services import service_topic
from app.store.catalog import apply_catalog_update
from collectors.base import CatalogUpdate, Collector, SourceUnavailable

log = logging.getLogger(__name__)


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
                if isinstance(record, CatalogUpdate):
                    changes = apply_catalog_update(db, collector.name, record)
                    for key, value in changes.counts().items():
                        counts[key] = counts.get(key, 0) + value
                    if changes.changed_services:
                        topics.add("services")
                        topics.update(service_topic(name) for name in changes.changed_services)
                else:
                    raise TypeError(f"unknown record type {type(record).__name__}")
            duration = time.perf_counter() - start
            warnings = [w.to_json() for w in getattr(collector, "warnings", list)()]
            if _record(
                db, collector, started_at, duration, ok=True, counts=counts, warnings=warnings
            ):
                topics.add("sources")
        result = PassResult(collector.name, True, duration, counts=counts)
    except Exception as exc:
        # What the collector returned is lost; one that reports changes only must start over.
        log.exception("writing what %s collected failed", collector.name)
        resync = getattr(collector, "resync", None)
        if resync is not None:
            resync()
        reason = f"could not store what was collected: {type(exc).__name__}: {exc}"
        result = _failed(qd, collector, started_at, start, reason, False)
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


def _failed(qd, collector, started_at, start, reason: str, config_error: bool) -> PassResult:
    duration = time.perf_counter() - start
    log.warning("source %s unavailable: %s", collector.name, reason)
    try:
        with qd.store.session(write=True) as db:
            _record(
                db,
                collector,
                started_at,
                duration,
                ok=False,
                error=reason,
                config_error=config_error,
            )
    except Exception:  # the store itself is down: the log and /metrics still tell
        log.exception("could not record the failed pass of %s", collector.name)
    return PassResult(collector.name, False, duration, error=reason, config_error=config_error)


def _record(
    db,
    collector: Collector,
    started_at,
    duration: float,
    *,
    ok: bool,
    counts: dict | None = None,
    error: str = "",
    config_error: bool = False,
    warnings: list[dict] | None = None,
) -> bool:
    """Store the run and the source's status; return True when the status or warnings changed.

    `warnings` None keeps the stored ones (a failed pass cannot tell whether they still hold).
    """
    db.add(
        CollectorRun(
            source=collector.name,
            kind=collector.kind,
            started_at=started_at,
            duration_s=duration,
            ok=ok,
            error=error,
            counts=counts or {},
        )
    )
    status = db.scalar(select(SourceStatus).where(SourceStatus.name == collector.name))
    if status is None:
        status = SourceStatus(name=collector.name, kind=collector.kind)
        db.add(status)
    flipped = status.ok != ok
    if warnings is not None and warnings != (status.warnings or []):
        status.warnings = warnings
        flipped = True
    status.kind = collector.kind
    status.last_run_at = started_at
    status.ok = ok
    if ok:
        status.last_success_at = started_at
        status.error_kind = ""
    else:
        status.last_error = error
        status.last_error_at = started_at
        status.error_kind = "config" if config_error else "unavailable"
    return flipped
