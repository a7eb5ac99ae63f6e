"""Delete history older than the configured retention ([retention]; 0 keeps forever)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.config import RetentionConfig
from app.models import (
    BalancerBackendRollup,
    BalancerRollup,
    CollectorRun,
    HealthTransition,
    IdemEventRow,
    ProbeResultRow,
    ProbeTransition,
    Sample,
)
from app.store.audit import prune_audit

# Run records only explain recent collection; a week is plenty for that.
COLLECTOR_RUNS_DAYS = 7


def prune(session: Session, retention: RetentionConfig, now: datetime) -> dict[str, int]:
    """Remove expired rows; return how many went per table. Flush, don't commit."""
    removed = {}
    for label, model, column, age in (
        (
            "health_transitions",
            HealthTransition,
            HealthTransition.at,
            timedelta(days=retention.transitions_d),
        ),
        ("samples", Sample, Sample.at, timedelta(days=retention.samples_d)),
        (
            "balancer_rollups",
            BalancerRollup,
            BalancerRollup.minute_at,
            timedelta(days=retention.samples_d),
        ),
        # The per-backend sums of the rows above: kept exactly as long.
        (
            "balancer_backend_rollups",
            BalancerBackendRollup,
            BalancerBackendRollup.minute_at,
            timedelta(days=retention.samples_d),
        ),
        (
            "probe_results",
            ProbeResultRow,
            ProbeResultRow.at,
            timedelta(days=retention.samples_d),
        ),
        (
            "probe_transitions",
            ProbeTransition,
            ProbeTransition.at,
            timedelta(days=retention.transitions_d),
        ),
        (
            "collector_runs",
            CollectorRun,
            CollectorRun.started_at,
            timedelta(days=COLLECTOR_RUNS_DAYS),
        ),
    ):
        if not age:
            continue
        result = session.execute(delete(model).where(column < now - age))
        removed[label] = result.rowcount or 0
    if retention.idempotency_d:
        # Events keep their own ts_ms (Unix ms), not a datetime column.
        cutoff_ms = int((now - timedelta(days=retention.idempotency_d)).timestamp() * 1000)
        result = session.execute(delete(IdemEventRow).where(IdemEventRow.at_ms < cutoff_ms))
        removed["idem_events"] = result.rowcount or 0
    if retention.audit_d:
        # Not by age alone: an entry a change still in force or another row needs stays.
        removed["audit_entries"] = prune_audit(session, now - timedelta(days=retention.audit_d))
    return removed
