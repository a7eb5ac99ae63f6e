"""The scheduler's probe job: run one probe and store what it saw."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from app.config import ProbeConfig
from app.context import Quarterdeck
from app.store.probes import record_probe_result
from collectors.probes import ProbeResult, run_probe

log = logging.getLogger(__name__)


def job_id(probe: ProbeConfig) -> str:
    """The probe's stable scheduler job id."""
    return f"probe:{probe.name}"


def run_and_record(qd: Quarterdeck, probe: ProbeConfig) -> ProbeResult:
    """Run the probe once and store its result (and any transition)."""
    result = run_probe(probe, os.environ, qd.clock)
    with qd.store.session(write=True) as db:
        transition = record_probe_result(db, result, timedelta(seconds=probe.interval_s))
    if transition is not None:
        log.info(
            "probe %s: %s -> %s (%s)",
            probe.name,
            transition.from_state,
            transition.to_state,
            result.detail,
        )
    return result
