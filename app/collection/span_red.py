"""The span RED job: add newly received spans into the RED rows; each run recorded like a pass."""

from __future__ import annotations

import logging
import time

from app.collection.runner import record_run
from app.collection.unrecorded import RunRecord
from app.context import Quarterdeck
from app.store.span_red import roll_up_spans

log = logging.getLogger(__name__)
JOB_NAME = "span-red"
JOB_KIND = "job"
# How often it adds what arrived (it reads 10 s behind now, app/store/span_red.py LAG_NS).
INTERVAL_S = 15
# A run that has not caught up by then stops; the next one goes on from the watermark.
BUDGET_S = 20.0


def roll_up_span_red(qd: Quarterdeck, budget_s: float = BUDGET_S) -> RunRecord:
    """Roll up batches (one transaction each) until none is left or time is up; record it."""
    started_at = qd.clock()
    start = time.perf_counter()
    counts = {"spans": 0, "edge_pairs": 0}
    try:
        while True:
            with qd.store.session(write=True) as db:
                run = roll_up_spans(db, qd.clock())
            counts["spans"] += run.spans
            counts["edge_pairs"] += run.edge_pairs
            if run.spans == 0 or time.perf_counter() - start > budget_s:
                break
        record = RunRecord(
            JOB_NAME, JOB_KIND, started_at, time.perf_counter() - start, True, "", counts
        )
    except Exception as exc:
        log.exception("span RED job failed")
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        record = RunRecord(
            JOB_NAME, JOB_KIND, started_at, time.perf_counter() - start, False, reason, counts
        )
    record_run(qd, record)
    return record
