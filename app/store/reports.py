"""Store reports and their deliveries; claim and record delivery attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, defer

from app.models import ReportDelivery, ReportRow


def add_report(db: Session, row: ReportRow, deliveries: Sequence[ReportDelivery]) -> None:
    """Insert a report and its deliveries (flush only; a repeated daily run: IntegrityError)."""
    db.add(row)
    db.flush()
    for delivery in deliveries:
        delivery.report_id = row.id
        db.add(delivery)
    db.flush()


def list_reports(
    db: Session, *, name: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[ReportRow], int]:
    """Return reports newest first without their HTML and CSV, and how many match in all."""
    query = select(ReportRow)
    if name:
        query = query.where(ReportRow.name == name)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.options(defer(ReportRow.html), defer(ReportRow.csv), defer(ReportRow.figures))
        .order_by(ReportRow.created_at.desc(), ReportRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def get_report(db: Session, report_id: str) -> ReportRow | None:
    """Return one report, or None."""
    return db.get(ReportRow, report_id)


def deliveries_of(db: Session, report_ids: Sequence[str]) -> dict[str, list[ReportDelivery]]:
    """Return each report's deliveries, e-mail before webhook, in insertion order."""
    found: dict[str, list[ReportDelivery]] = {r: [] for r in report_ids}
    if not report_ids:
        return found
    for row in db.scalars(
        select(ReportDelivery)
        .where(ReportDelivery.report_id.in_(list(report_ids)))
        .order_by(ReportDelivery.id)
    ):
        found[row.report_id].append(row)
    return found


def due_delivery_ids(db: Session, now: datetime, report_id: str | None = None) -> list[int]:
    """Return the pending deliveries whose next attempt is due, oldest first."""
    query = select(ReportDelivery.id).where(
        ReportDelivery.state == "pending", ReportDelivery.next_attempt_at <= now
    )
    if report_id is not None:
        query = query.where(ReportDelivery.report_id == report_id)
    return list(db.scalars(query.order_by(ReportDelivery.next_attempt_at, ReportDelivery.id)))


def claim_delivery(db: Session, delivery_id: int, now: datetime, lease_s: float) -> bool:
    """Take a due delivery for one attempt: moves its next attempt past the lease, atomically.

    Two processes that both see it due cannot both send it: only one update matches.
    """
    result = db.execute(
        update(ReportDelivery)
        .where(
            ReportDelivery.id == delivery_id,
            ReportDelivery.state == "pending",
            ReportDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + timedelta(seconds=lease_s))
    )
    return result.rowcount == 1


def record_attempt(
    db: Session,
    delivery_id: int,
    *,
    ok: bool,
    detail: str,
    at: datetime,
    backoff_s: float,
    final: bool = False,
) -> ReportDelivery:
    """Write one attempt's result: ok, or pending again after the backoff, or failed for good."""
    row = db.get(ReportDelivery, delivery_id)
    row.attempts += 1
    row.last_attempt_at = at
    row.detail = detail
    row.history = [*row.history, {"at": at.isoformat().replace("+00:00", "Z"), "ok": ok,
                                  "detail": detail}]  # fmt: skip
    if ok:
        row.state, row.next_attempt_at = "ok", None
    elif final or row.attempts >= row.max_attempts:
        row.state, row.next_attempt_at = "failed", None
    else:
        # Exponential backoff: backoff, 2×, 4× ... after the 1st, 2nd, 3rd failed attempt.
        wait = backoff_s * 2 ** (row.attempts - 1)
        row.state, row.next_attempt_at = "pending", at + timedelta(seconds=wait)
    db.flush()
    return row
