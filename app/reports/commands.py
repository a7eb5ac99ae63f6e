"""`quarterdeck report run NAME [--out FILE]` and `quarterdeck report list`."""

from __future__ import annotations

import sys
from pathlib import Path

from app.context import Quarterdeck
from app.queries.reports import report_status
from app.reports.running import UnknownReport, run_now
from app.store.reports import deliveries_of, get_report, list_reports

LISTED = 20


def run_report_command(qd: Quarterdeck, name: str, out: str | None) -> int:
    """Make the report, attempt its deliveries, print where it stands; 1 if a delivery failed."""
    if out is not None and not Path(out).parent.is_dir():
        print(f"quarterdeck: --out {out}: no such folder", file=sys.stderr)
        return 2
    try:
        report_id = run_now(qd, name, "cli")
    except UnknownReport as exc:
        print(f"quarterdeck: {exc}", file=sys.stderr)
        return 2
    with qd.store.session() as db:
        row = get_report(db, report_id)
        deliveries = deliveries_of(db, [report_id])[report_id]
    s = row.figures["summary"]
    availability = s["fleet_availability"]
    shown = "no data" if availability is None else f"{availability * 100:.3f}%"
    print(f"report {row.name} {row.id}: {row.period_start_at:%Y-%m-%dT%H:%MZ} to "
          f"{row.period_end_at:%Y-%m-%dT%H:%MZ}, made in {row.generation_ms} ms")  # fmt: skip
    print(f"  {s['services']} services, availability {shown}, {s['incidents']} incidents, "
          f"{s['actions']} actions, {s['conflicts']} idempotency conflicts")  # fmt: skip
    for d in deliveries:
        word = {"ok": "sent", "failed": "FAILED"}.get(d.state, "will retry")
        print(f"  {d.via:<8} {word}: {d.detail}")
    if out is not None:
        Path(out).write_text(row.csv if out.endswith(".csv") else row.html, encoding="utf-8")
        print(f"  written to {out}")
    return 1 if any(d.state != "ok" for d in deliveries) else 0


def list_reports_command(qd: Quarterdeck) -> int:
    """Print the configured reports, then the latest stored ones with their status."""
    if qd.config.reports:
        print(f"{'REPORT':<24} {'WHEN':<18} {'PERIOD':<8} DELIVERY")
        for r in qd.config.reports:
            when = f"daily {r.daily_at} UTC" if r.daily_at else "on demand"
            via = ", ".join(
                v for v, on in (("e-mail", r.email_to), ("webhook", r.webhook_url)) if on
            )
            print(f"{r.name:<24} {when:<18} {str(r.period_h) + ' h':<8} {via or 'stored only'}")
    else:
        print("no [[reports]] configured")
    with qd.store.session() as db:
        rows, total = list_reports(db, limit=LISTED)
        deliveries = deliveries_of(db, [r.id for r in rows])
    if not rows:
        print("no report stored yet")
        return 0
    print()
    print(f"{'ID':<32}  {'REPORT':<24} {'CREATED':<20} {'STATUS':<10} DELIVERIES")
    for row in rows:
        sent = ", ".join(f"{d.via} {d.state} ({d.attempts})" for d in deliveries[row.id])
        created = row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        status = report_status(deliveries[row.id])
        print(f"{row.id:<32}  {row.name:<24} {created:<20} {status:<10} {sent or '-'}")
    if total > len(rows):
        print(f"({total - len(rows)} older not shown)")
    return 0
