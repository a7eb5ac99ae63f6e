"""Retention drops old traces whole, and the row budget samples: error and slow traces stay."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from app.auth.accounts import create_user
from app.collection.jobs import declared_jobs
from app.collection.scheduler import CollectionService, run_job
from app.collection.span_retention import INTERVAL_S, JOB_NAME, enforce_span_retention
from app.config import RetentionConfig
from app.factory import create_app
from app.models import CollectorRun, SourceStatus
from app.store.traces import write_spans
from collectors.spans import SpanRecord
from tests.conftest import PASSWORD, sign_in
from tests.otlp.conftest import stored_spans, stored_traces

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * 10**9
HOUR_NS = 3600 * 10**9


def seed(qd, trace: int, *, age_h: float, spans: int = 3, error=False, duration_ms=10, op="GET /"):
    """One trace of `spans` spans (the root plus children), started `age_h` hours ago."""
    start = NOW_NS - int(age_h * HOUR_NS)
    records = [
        SpanRecord(
            trace_id=f"{trace:032x}",
            span_id=f"{n + 1:016x}",
            parent_span_id="" if n == 0 else f"{1:016x}",
            service="orders",
            name=op if n == 0 else f"child-{n}",
            start_ns=start,
            duration_ns=duration_ms * 10**6 if n == 0 else 10**6,
            status_code=2 if error and n == spans - 1 else 0,
        )
        for n in range(spans)
    ]
    with qd.store.session(write=True) as db:
        write_spans(db.connection(), records)


def at_now(make_qd, store_url, **retention):
    qd = make_qd(store_url, retention=RetentionConfig(**retention))
    qd.clock = lambda: NOW
    return qd


def kept(qd) -> set[int]:
    return {int(t.trace_id, 16) for t in stored_traces(qd)}


def test_traces_older_than_spans_h_go_whole_and_newer_ones_stay(make_qd, store_url):
    qd = at_now(make_qd, store_url, spans_h=72)
    seed(qd, 1, age_h=100)
    seed(qd, 2, age_h=100, error=True)  # age is absolute: errors go too
    seed(qd, 3, age_h=1)
    run = enforce_span_retention(qd)
    assert run.ok, run.error
    assert kept(qd) == {3}
    assert {int(s.trace_id, 16) for s in stored_spans(qd)} == {3}
    assert run.counts["expired_traces"] == 2 and run.counts["spans_deleted"] == 6


def test_over_the_row_budget_the_oldest_go_but_error_traces_stay(make_qd, store_url):
    qd = at_now(make_qd, store_url, spans_h=0, spans_max=9)
    seed(qd, 1, age_h=5, error=True)  # the oldest, but an error trace
    seed(qd, 2, age_h=4)
    seed(qd, 3, age_h=3)
    seed(qd, 4, age_h=2)
    seed(qd, 5, age_h=1)
    run = enforce_span_retention(qd)
    assert run.ok, run.error
    # 15 spans, budget 9: the two oldest ordinary traces go, the error trace stays.
    assert kept(qd) == {1, 4, 5}
    assert len(stored_spans(qd)) == 9
    assert run.counts["sampled_traces"] == 2 and run.counts["over_budget"] == 0


def test_slow_traces_stay_by_threshold_and_by_their_operations_p95(make_qd, store_url):
    qd = at_now(make_qd, store_url, spans_h=0, spans_max=1, slow_ms=5_000)
    seed(qd, 1, age_h=9, duration_ms=6_000, op="GET /report")  # over slow_ms
    for i in range(2, 21):  # nineteen ordinary checkouts, and one slower than all of them
        seed(qd, i, age_h=8 - i * 0.1, spans=1, duration_ms=20 + i, op="POST /checkout")
    seed(qd, 99, age_h=8.5, spans=1, duration_ms=900, op="POST /checkout")
    run = enforce_span_retention(qd)
    assert run.ok, run.error
    assert kept(qd) == {1, 99}
    assert run.counts["over_budget"] == 3  # the kept traces' 4 spans, over a budget of 1


def signed_in_client(qd):
    with qd.store.session() as db:
        create_user(db, "viewer", "viewer", PASSWORD)
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "viewer").status_code == 302
    return client


def test_each_run_is_recorded_and_shown_on_the_sources_page(make_qd, store_url):
    qd = at_now(make_qd, store_url, spans_h=72)
    seed(qd, 1, age_h=100)
    [job] = [job for job in declared_jobs(qd) if job.id == JOB_NAME]
    run_job(qd, job)  # as the scheduler runs it
    with qd.store.session() as db:
        (run,) = db.scalars(select(CollectorRun).where(CollectorRun.source == JOB_NAME))
        status = db.scalar(select(SourceStatus).where(SourceStatus.name == JOB_NAME))
    assert run.ok and run.counts["expired_traces"] == 1
    assert status.ok and status.kind == "job"

    page = signed_in_client(qd).get("/sources").get_data(as_text=True)
    assert 'data-job="span-retention"' in page
    assert "expired traces</span> 1" in page


def test_serve_schedules_the_span_retention_job(make_qd, store_url):
    qd = at_now(make_qd, store_url, spans_h=72)
    service = CollectionService(qd)
    service.start()
    try:
        job = service.scheduler.get_job(JOB_NAME)
        assert job is not None and job.trigger.interval.total_seconds() == INTERVAL_S
    finally:
        service.stop()
