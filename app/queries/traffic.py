"""The Overview's Traffic card: the services that matter most right now, with their figures.

Erroring services come first (an error ratio above `[verdict] error_ratio` at a rate of at
least `min_rate_rps`, the same test the verdict makes), worst ratio first; then the busiest by
request rate. Each row carries its RED figures as the service page shows them (Prometheus,
else the spans) and what each balancer does with its members. The cost is a few queries,
whatever the fleet's size: the figures of every service at once, the balancer rows of the
listed ones at once.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from app.queries.balancers import balancer_summary, lb_rows_by_service
from app.queries.metrics import RedFigures, red_or_traces_by_service
from app.queries.sources import SourceView
from app.queries.verdict import VerdictRules

TRAFFIC_ROWS = 10


def is_erroring(red: RedFigures, rules: VerdictRules) -> bool:
    """Tell whether a service's errors are above the verdict's threshold at a rate that counts."""
    return (
        red.error_ratio is not None
        and red.error_ratio > rules.error_ratio
        and (red.rate_rps or 0.0) >= rules.min_rate_rps
    )


def _rank(red: RedFigures, rules: VerdictRules) -> tuple:
    if is_erroring(red, rules):
        return (0, -(red.error_ratio or 0.0), -(red.rate_rps or 0.0), red.service)
    return (1, red.rate_rps is None, -(red.rate_rps or 0.0), red.service)


def busiest_services(
    db: Session,
    now: datetime,
    rules: VerdictRules,
    sources: Mapping[str, SourceView],
    leave_out: Container[str] = (),
    limit: int = TRAFFIC_ROWS,
) -> tuple[list[dict], int]:
    """Return the rows of the Traffic card, erroring then busiest, and how many services have
    figures at all. `leave_out` names services not to list (sidecar proxies)."""
    figures = [
        red
        for name, red in red_or_traces_by_service(db, now).items()
        if name not in leave_out
        and any(v is not None for v in (red.rate_rps, red.error_ratio, red.p95_ms))
    ]
    figures.sort(key=lambda red: _rank(red, rules))
    shown = figures[:limit]
    lb = lb_rows_by_service(db, [red.service for red in shown], sources, now)
    rows = []
    for red in shown:
        source = sources.get(red.source)
        rows.append(
            {
                "service": red.service,
                "red": red.to_json(source),
                "stale_since": source.stale_since if source is not None and source.stale else None,
                "erroring": is_erroring(red, rules),
                "balancers": balancer_summary(lb.get(red.service, {})),
            }
        )
    return rows, len(figures)
