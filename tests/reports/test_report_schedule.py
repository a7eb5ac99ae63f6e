"""Daily reports are jobs at their UTC time, made once per day however many times they run;
the delivery retries are a job of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.collection.jobs import declared_jobs
from app.collection.scheduler import CollectionService
from app.config import ReportConfig
from app.models import ReportRow
from app.reports.running import last_daily_time, run_daily

REPORTS = (
    ReportConfig(name="morning", daily_at="07:30"),
    ReportConfig(name="adhoc"),
)


def test_each_daily_report_is_a_job_and_deliveries_have_one(make_qd):
    qd = make_qd(reports=REPORTS)
    jobs = {job.id: job for job in declared_jobs(qd)}
    assert jobs["report:morning"].daily_at == "07:30"
    assert "report:adhoc" not in jobs  # on demand only
    assert jobs["report-deliveries"].every_s == 15
    assert "report-deliveries" not in {j.id for j in declared_jobs(make_qd())}


def test_the_scheduler_runs_a_daily_report_at_its_utc_time(make_qd):
    qd = make_qd(reports=REPORTS)
    service = CollectionService(qd)
    service.reconcile(declared_jobs(qd))
    service.scheduler.start(paused=True)
    try:
        job = service.scheduler.get_job("report:morning")
        after = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
        fire = job.trigger.get_next_fire_time(None, after)
        assert fire == datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
        assert str(job.trigger.timezone) == "UTC"
    finally:
        service.stop()


def test_the_last_daily_time_is_today_once_it_has_passed_else_yesterday():
    report = REPORTS[0]
    assert last_daily_time(report, datetime(2026, 12, 2, 7, 30, tzinfo=UTC)) == datetime(
        2026, 12, 2, 7, 30, tzinfo=UTC
    )
    assert last_daily_time(report, datetime(2026, 12, 2, 7, 29, tzinfo=UTC)) == datetime(
        2026, 12, 1, 7, 30, tzinfo=UTC
    )


def test_a_daily_run_is_made_once_even_when_two_replicas_run_it(make_qd):
    qd = make_qd(reports=REPORTS)
    other = make_qd(reports=REPORTS)
    now = datetime(2026, 12, 2, 9, 15, tzinfo=UTC)
    qd.clock = other.clock = lambda: now
    first = run_daily(qd, REPORTS[0])
    assert first is not None
    assert run_daily(other, REPORTS[0]) is None  # the same day's run, already made
    with qd.store.session() as db:
        row = db.get(ReportRow, first)
        assert row.period_end_at == datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
        assert row.period_start_at == row.period_end_at - timedelta(hours=24)
        assert row.trigger == "schedule"
        assert db.scalar(select(func.count()).select_from(ReportRow)) == 1
    # The next day's run is a new report.
    now = datetime(2026, 12, 3, 7, 31, tzinfo=UTC)
    assert run_daily(qd, REPORTS[0]) not in (None, first)
