"""The span retention job: age, then the row budget; each run recorded like a collection pass."""

from __future__ import annotations

import logging
import time

from app.collection.runner import record_run
from app.collection.unrecorded import RunRecord
from app.context import Quarterdeck
from app.store.span_retention import (
    delete_traces,
    expired_traces,
    stored_span_count,
    traces_over_budget,
)

log = logging.getLogger(__name__)
JOB_NAME = "span-retention"
JOB_KIND = "job"
INTERVAL_S = 300
# Traces deleted per transaction: short write locks, so ingest waits at most moments.
CHUNK_TRACES = 500


def enforce_span_retention(qd: Quarterdeck) -> RunRecord:
    """Delete expired traces, then the oldest ordinary ones over the budget; record the run."""
    started_at = qd.clock()
    start = time.perf_counter()
    try:
        counts = _enforce(qd)
        duration = time.perf_counter() - start
        run = RunRecord(JOB_NAME, JOB_KIND, started_at, duration, True, "", counts)
    except Exception as exc:
        log.exception("span retention failed")
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        run = RunRecord(JOB_NAME, JOB_KIND, started_at, time.perf_counter() - start, False, reason)
    record_run(qd, run)
    if run.ok and (run.counts["expired_traces"] or run.counts["sampled_traces"]):
        log.info("span retention: %s", run.counts)
    return run


def _enforce(qd: Quarterdeck) -> dict[str, int]:
    retention = qd.config.retention
    counts = {"expired_traces": 0, "sampled_traces": 0, "spans_deleted": 0, "over_budget": 0}
    if retention.spans_h:
        now_ns = int(qd.clock().timestamp() * 1e9)
        while True:
            with qd.store.session(write=True) as db:
                connection = db.connection()
                chosen = expired_traces(connection, now_ns, retention.spans_h, CHUNK_TRACES)
                counts["spans_deleted"] += delete_traces(connection, chosen)
            counts["expired_traces"] += len(chosen)
            if len(chosen) < CHUNK_TRACES:
                break
    if retention.spans_max:
        with qd.store.session() as db:
            connection = db.connection()
            excess = stored_span_count(connection) - retention.spans_max
            chosen = traces_over_budget(connection, excess, retention.slow_ms) if excess > 0 else []
        deleted = 0
        for i in range(0, len(chosen), CHUNK_TRACES):
            with qd.store.session(write=True) as db:
                deleted += delete_traces(db.connection(), chosen[i : i + CHUNK_TRACES])
        counts["sampled_traces"] = len(chosen)
        counts["spans_deleted"] += deleted
        # What error and slow traces keep above the budget (they are never sampled away).
        counts["over_budget"] = max(0, excess - deleted)
    return counts
