"""Delete history older than the configured retention ([retention]; 0 keeps forever)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.config import RetentionConfig
from app.models import BalancerRollup, CollectorRun, HealthTransition, Sample

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
    return removed
