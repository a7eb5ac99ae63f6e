"""Make a report (on demand or daily), store it, and deliver it with retries."""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import datetime, timedelta
from datetime import time as day_time

from sqlalchemy.exc import IntegrityError

from app.config import ReportConfig
from app.context import Quarterdeck
from app.models import ReportDelivery, ReportRow
from app.queries.sources import iso
from app.reports.delivery import DeliveryError, build_message, post_webhook, send_email
from app.reports.figures import build_figures
from app.reports.render import render_csv, render_html, render_text
from app.store.reports import (
    add_report,
    claim_delivery,
    due_delivery_ids,
    get_report,
    record_attempt,
)

log = logging.getLogger(__name__)
# How long one attempt may hold a delivery before another process may try it again.
CLAIM_LEASE_S = 300
WEBHOOK_TIMEOUT_S = 10


class UnknownReport(LookupError):
    """No [[reports]] entry has that name."""


def find_report(qd: Quarterdeck, name: str) -> ReportConfig:
    """Return the configured report called `name`, or raise UnknownReport naming the choices."""
    for report in qd.config.reports:
        if report.name == name:
            return report
    names = ", ".join(r.name for r in qd.config.reports) or "none is configured"
    raise UnknownReport(f"no [[reports]] entry is named {name!r} ({names})")


def title_of(report: ReportConfig, end_at: datetime) -> str:
    """The report's title (and mail subject)."""
    return f"Handoff report {report.name} · {end_at:%Y-%m-%d %H:%M} UTC"


def make_report(
    qd: Quarterdeck,
    report: ReportConfig,
    trigger: str,
    *,
    end_at: datetime | None = None,
    scheduled_for_at: datetime | None = None,
) -> str | None:
    """Compute, render and store a report with its deliveries pending; return its id.

    Returns None when this daily run was already made (by this or another replica).
    """
    now = qd.clock()
    end_at = end_at or scheduled_for_at or now
    start_at = end_at - timedelta(hours=report.period_h)
    began = time.perf_counter()
    with qd.store.session() as db:
        figures = build_figures(db, qd.config, report, start_at, end_at)
    title = title_of(report, end_at)
    html = render_html(figures, title=title)
    csv = render_csv(figures)
    row = ReportRow(
        id=secrets.token_hex(16),
        name=report.name,
        created_at=now,
        period_start_at=start_at,
        period_end_at=end_at,
        trigger=trigger,
        scheduled_for_at=scheduled_for_at,
        figures=figures,
        html=html,
        csv=csv,
        generation_ms=int((time.perf_counter() - began) * 1000),
    )
    deliveries = []
    if report.email_to:
        deliveries.append(_delivery("email", ", ".join(report.email_to), report, now))
    if report.webhook_url:
        deliveries.append(_delivery("webhook", report.webhook_url, report, now))
    try:
        with qd.store.session(write=True) as db:
            add_report(db, row, deliveries)
    except IntegrityError:
        if scheduled_for_at is None:
            raise
        log.info("report %s for %s was already made", report.name, iso(scheduled_for_at))
        return None
    qd.feed.publish({"reports"})
    log.info(
        "report %s made (%s, %d ms, %d deliveries)",
        report.name, row.id, row.generation_ms, len(deliveries),
    )  # fmt: skip
    return row.id


def _delivery(via: str, destination: str, report: ReportConfig, now: datetime) -> ReportDelivery:
    return ReportDelivery(
        via=via,
        destination=destination,
        state="pending",
        attempts=0,
        max_attempts=report.attempts,
        next_attempt_at=now,
        detail="",
        history=[],
    )


def deliver_due(qd: Quarterdeck, report_id: str | None = None) -> dict[str, int]:
    """Attempt every delivery that is due (of one report, if given); return the outcomes."""
    now = qd.clock()
    with qd.store.session() as db:
        due = due_delivery_ids(db, now, report_id)
    counts = {"sent": 0, "failed": 0, "retrying": 0}
    for delivery_id in due:
        with qd.store.session(write=True) as db:
            if not claim_delivery(db, delivery_id, now, CLAIM_LEASE_S):
                continue  # another process took it
        outcome = _attempt(qd, delivery_id)
        counts[outcome] += 1
    return counts


def _attempt(qd: Quarterdeck, delivery_id: int) -> str:
    with qd.store.session() as db:
        delivery = db.get(ReportDelivery, delivery_id)
        row = get_report(db, delivery.report_id)
    final, backoff = False, 0.0
    try:
        report = find_report(qd, row.name)
    except UnknownReport:
        # The report stays for the record; its delivery settings went with its configuration.
        ok, detail, final = False, f"[[reports]] {row.name!r} is no longer configured", True
    else:
        backoff = float(report.retry_backoff_s)
        try:
            detail = _send(qd, report, row, delivery)
            ok = True
        except DeliveryError as exc:
            ok, detail = False, str(exc)
    with qd.store.session(write=True) as db:
        result = record_attempt(db, delivery_id, ok=ok, detail=detail, at=qd.clock(),
                                backoff_s=backoff, final=final)  # fmt: skip
        state, attempts = result.state, result.attempts
    qd.feed.publish({"reports"})
    level = logging.INFO if ok else logging.WARNING
    log.log(level, "report %s %s delivery attempt %d: %s", row.name, delivery.via, attempts, detail)
    if ok:
        return "sent"
    return "failed" if state == "failed" else "retrying"


def _send(qd: Quarterdeck, report: ReportConfig, row: ReportRow, delivery: ReportDelivery) -> str:
    title = title_of(report, row.period_end_at)
    if delivery.via == "email":
        smtp = qd.config.smtp
        if smtp is None:
            raise DeliveryError("no [smtp] section is configured")
        message = build_message(
            smtp, report.email_to, title, render_text(row.figures, title=title), row.html,
            row.csv, f"{report.name}-{row.period_end_at:%Y%m%dT%H%MZ}.csv",
        )  # fmt: skip
        return send_email(smtp, message)
    body = json.dumps(webhook_payload(row), separators=(",", ":")).encode()
    return post_webhook(report, body, timeout_s=WEBHOOK_TIMEOUT_S)


def webhook_payload(row: ReportRow) -> dict:
    """The JSON a webhook receives: the report's identity and every figure."""
    return {
        "id": row.id,
        "name": row.name,
        "created_at": iso(row.created_at),
        "period": {"start_at": iso(row.period_start_at), "end_at": iso(row.period_end_at)},
        "trigger": row.trigger,
        "figures": row.figures,
    }


def last_daily_time(report: ReportConfig, now: datetime) -> datetime:
    """The latest configured daily time at or before `now` (UTC)."""
    hour, minute = (int(part) for part in report.daily_at.split(":"))
    today = datetime.combine(now.date(), day_time(hour, minute), tzinfo=now.tzinfo)
    return today if today <= now else today - timedelta(days=1)


def run_daily(qd: Quarterdeck, report: ReportConfig) -> str | None:
    """The daily job: make today's report once (catching up a missed one) and send it."""
    scheduled = last_daily_time(report, qd.clock())
    report_id = make_report(qd, report, "schedule", scheduled_for_at=scheduled)
    if report_id is not None:
        deliver_due(qd, report_id)
    return report_id


def run_now(qd: Quarterdeck, name: str, trigger: str = "cli") -> str:
    """Make a report now and make its first delivery attempts; return its id."""
    report = find_report(qd, name)
    report_id = make_report(qd, report, trigger)
    deliver_due(qd, report_id)
    return report_id
