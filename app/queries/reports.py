"""Reports as the API and the Reports page show them: status, deliveries, the figures."""

from __future__ import annotations

from collections.abc import Sequence

from app.models import ReportDelivery, ReportRow
from app.queries.sources import iso


def report_status(deliveries: Sequence[ReportDelivery]) -> str:
    """One word for where a report stands.

    stored (nothing to deliver) · sending (an attempt is due or running) · retrying (a failed
    attempt, another to come) · delivered (every delivery sent) · failed (none sent, no
    attempt left) · partial (some sent, the others out of attempts).
    """
    if not deliveries:
        return "stored"
    states = [d.state for d in deliveries]
    if "pending" in states:
        pending = [d for d in deliveries if d.state == "pending"]
        return "retrying" if any(d.attempts for d in pending) else "sending"
    if all(s == "ok" for s in states):
        return "delivered"
    return "partial" if "ok" in states else "failed"


def delivery_json(delivery: ReportDelivery) -> dict:
    """Render one delivery (DESIGN §5: via, ok, at, detail; the rest is more)."""
    return {
        "via": delivery.via,
        "ok": True if delivery.state == "ok" else False if delivery.attempts else None,
        "at": iso(delivery.last_attempt_at),
        "detail": delivery.detail,
        "destination": delivery.destination,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "max_attempts": delivery.max_attempts,
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
        "history": list(delivery.history),
    }


def report_json(
    row: ReportRow, deliveries: Sequence[ReportDelivery], *, full: bool = False
) -> dict:
    """Render a report for `GET /api/v1/reports` (and with its figures for one report)."""
    body = {
        "id": row.id,
        "name": row.name,
        "created_at": iso(row.created_at),
        "status": report_status(deliveries),
        "delivery": [delivery_json(d) for d in deliveries],
        "period": {"start_at": iso(row.period_start_at), "end_at": iso(row.period_end_at)},
        "trigger": row.trigger,
        "generation_ms": row.generation_ms,
    }
    if full:
        body["figures"] = row.figures
    return body
