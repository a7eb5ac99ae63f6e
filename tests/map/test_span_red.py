"""RED from spans: per-minute rows give rate, error ratio and p95, each pair counted once."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import func, select

from app.collection.jobs import declared_jobs
from app.collection.scheduler import CollectionService, run_job
from app.collection.span_red import JOB_NAME
from app.models import CollectorRun, SpanRedMinute, SpanRedRecent
from app.queries.jobs import job_views
from app.queries.span_red import (
    all_span_red,
    edge_span_red,
    histogram_quantile,
    service_span_red,
)
from app.store.span_red import LAG_NS, prune_span_red, roll_up_spans
from tests.fixtures.processes import wait_for
from tests.map.conftest import now_minute

SECOND = 1_000_000_000
RECEIVED = 1_900_000_000 * SECOND  # a receive clock the tests control


def test_rate_error_ratio_and_p95_come_from_the_minute_rows(qd, spans_at, receive, roll_up):
    minute = now_minute() - timedelta(minutes=10)
    maker = spans_at(minute)
    spans = [
        maker.span(t, "orders", kind=2, duration_ms=t, error=t % 15 == 0) for t in range(1, 101)
    ]
    receive(spans)
    roll_up()
    with qd.store.session() as db:
        red = service_span_red(db, "orders", minute, minute + timedelta(minutes=1))
    assert red.count == 100
    assert red.rate_rps == 100 / 60
    assert red.error_ratio == 6 / 100  # 15, 30, 45, 60, 75, 90
    # The true p95 is 95 ms; the estimate stays inside its bucket (60, 100].
    assert 60 <= red.p95_ms <= 100
    assert abs(red.p95_ms - 95) < 40
    assert red.p50_ms is not None and 40 <= red.p50_ms <= 60


def test_no_spans_means_none_never_zero(qd):
    now = qd.clock()
    with qd.store.session() as db:
        assert service_span_red(db, "orders", now - timedelta(minutes=15), now) is None
        assert edge_span_red(db, "gateway", "orders", now - timedelta(minutes=15), now) is None


def test_a_window_sums_the_minutes_it_touches(qd, spans_at, receive, roll_up):
    first = now_minute() - timedelta(minutes=30)
    for offset, count in ((0, 30), (1, 60), (5, 90)):
        maker = spans_at(first + timedelta(minutes=offset))
        receive([maker.span(100 * offset + t, "orders") for t in range(count)])
    roll_up()
    with qd.store.session() as db:
        two = service_span_red(db, "orders", first, first + timedelta(minutes=2))
        all_of_it = service_span_red(db, "orders", first, first + timedelta(minutes=10))
    assert two.count == 90 and two.rate_rps == 90 / 120
    assert all_of_it.count == 180


def test_service_figures_count_server_consumer_and_root_spans_only(qd, spans_at, receive, roll_up):
    maker = spans_at()
    root_job = maker.span(1, "billing", kind=1)  # a root INTERNAL span: a job's run
    client = maker.span(1, "billing", parent=root_job, kind=3)
    inner = maker.span(1, "billing", parent=root_job, kind=1)
    consumer = maker.span(2, "billing", parent=maker.span(2, "queue", kind=4), kind=5)
    receive([root_job, client, inner, consumer])
    roll_up()
    now = qd.clock()
    with qd.store.session() as db:
        red = service_span_red(
            db, "billing", now - timedelta(minutes=5), now + timedelta(minutes=1)
        )
    assert red.count == 2  # the root job and the consumer


def test_the_p95_estimate_is_linear_within_a_bucket():
    # 20 durations in the (10, 15] ms bucket: the 95th is at 95% of the way through it.
    buckets = [0] * 20
    buckets[4] = 20
    assert histogram_quantile(0.95, buckets, 15.0) == 10 + 5 * 0.95
    # ... but never above the largest duration seen.
    assert histogram_quantile(0.95, buckets, 14.0) == 14.0
    assert histogram_quantile(0.95, [0] * 20, 0.0) is None
    # The open last bucket ends at the largest duration seen.
    tail = [0] * 20
    tail[19] = 10
    assert 30000 < histogram_quantile(0.5, tail, 50000.0) <= 50000


def test_a_child_that_arrives_after_its_parent_is_counted_once(qd, spans_at, receive, roll_up):
    maker = spans_at()
    parent = maker.span(1, "gateway", kind=3)
    child = maker.span(1, "orders", parent=parent, kind=2, error=True)
    receive([parent], RECEIVED)
    roll_up(RECEIVED)
    receive([child], RECEIVED + 5 * SECOND)
    roll_up(RECEIVED + 5 * SECOND)
    roll_up(RECEIVED + 60 * SECOND)  # nothing new: nothing added twice
    assert edge_counts(qd) == {("gateway", "orders"): (1, 1)}


def test_a_parent_that_arrives_after_its_child_is_counted_once(qd, spans_at, receive, roll_up):
    maker = spans_at()
    parent = maker.span(1, "gateway", kind=3)
    child = maker.span(1, "orders", parent=parent, kind=2)
    receive([child], RECEIVED)
    roll_up(RECEIVED)
    assert edge_counts(qd) == {}  # its parent is not here yet
    receive([parent], RECEIVED + 30 * SECOND)
    roll_up(RECEIVED + 30 * SECOND)
    roll_up(RECEIVED + 90 * SECOND)
    assert edge_counts(qd) == {("gateway", "orders"): (1, 0)}


def test_parent_and_child_in_one_window_are_counted_once(qd, spans_at, receive, roll_up):
    maker = spans_at()
    parent = maker.span(1, "gateway", kind=3)
    child = maker.span(1, "orders", parent=parent, kind=2)
    receive([parent], RECEIVED)
    receive([child], RECEIVED + SECOND)
    roll_up(RECEIVED + SECOND)
    assert edge_counts(qd) == {("gateway", "orders"): (1, 0)}


def test_spans_received_within_the_lag_wait_for_the_next_run(qd, spans_at, receive):
    maker = spans_at()
    receive([maker.span(1, "orders")], RECEIVED)
    with qd.store.session(write=True) as db:
        early = roll_up_spans(db, qd.clock(), now_ns=RECEIVED + LAG_NS - 1)
    with qd.store.session(write=True) as db:
        late = roll_up_spans(db, qd.clock(), now_ns=RECEIVED + LAG_NS)
    assert (early.spans, late.spans) == (0, 1)


def test_a_batch_never_splits_spans_received_together(qd, spans_at, receive):
    maker = spans_at()
    receive([maker.span(t, "orders") for t in range(5)], RECEIVED)
    receive([maker.span(10, "orders")], RECEIVED + SECOND)
    with qd.store.session(write=True) as db:
        first = roll_up_spans(db, qd.clock(), now_ns=RECEIVED + 60 * SECOND, batch=2)
    with qd.store.session(write=True) as db:
        second = roll_up_spans(db, qd.clock(), now_ns=RECEIVED + 60 * SECOND, batch=2)
    assert (first.spans, second.spans) == (5, 1)


def test_the_job_records_its_runs_and_catches_up(qd, spans_at, receive):
    maker = spans_at()
    receive([maker.span(t, "orders") for t in range(3)], time.time_ns() - 60 * SECOND)
    [declared] = [job for job in declared_jobs(qd) if job.id == JOB_NAME]
    run_job(qd, declared)  # as the scheduler runs it
    with qd.store.session() as db:
        run = db.scalars(select(CollectorRun).where(CollectorRun.source == JOB_NAME)).one()
        [job] = [j for j in job_views(db, declared_jobs(qd), qd.clock()) if j.id == JOB_NAME]
    assert run.ok and run.kind == "job" and run.counts["spans"] == 3
    # The Sources page's scheduled jobs list it with its last result.
    assert (job.status, job.counts) == ("ok", {"spans": 3, "edge_pairs": 0})


def test_retention_removes_rows_older_than_the_spans_retention(qd, spans_at, receive, roll_up):
    now = now_minute()
    receive([spans_at(now - timedelta(hours=80)).span(1, "orders")])
    receive([spans_at(now - timedelta(hours=1)).span(2, "orders")])
    roll_up()
    with qd.store.session(write=True) as db:
        removed = prune_span_red(db, 72, qd.clock())
    with qd.store.session() as db:
        left = db.scalar(select(func.count()).select_from(SpanRedMinute))
    assert (removed, left) == (1, 1)


def edge_counts(qd) -> dict[tuple[str, str], tuple[int, int]]:
    with qd.store.session() as db:
        rows = db.execute(
            select(SpanRedMinute.source, SpanRedMinute.target, SpanRedMinute.count,
                   SpanRedMinute.errors).where(SpanRedMinute.target != "")
        ).all()  # fmt: skip
    return {(r.source, r.target): (r.count, r.errors) for r in rows}


def test_the_recent_sums_match_the_minute_rows_and_slide_with_the_clock(qd, spans_at, receive):
    now = now_minute()
    received = time.time_ns() - 120 * SECOND  # the job reads up to the present: the fast path
    for minutes_ago, n in ((20, 5), (10, 7), (1, 11)):
        maker = spans_at(now - timedelta(minutes=minutes_ago))
        parent = [maker.span(1000 * minutes_ago + i, "gateway", kind=3) for i in range(n)]
        children = [
            maker.span(1000 * minutes_ago + i, "orders", parent=p) for i, p in enumerate(parent)
        ]
        receive(parent + children, received + minutes_ago)
    with qd.store.session(write=True) as db:
        roll_up_spans(db, now, now_ns=received + 60 * SECOND)
    with qd.store.session() as db:
        assert recent_sums(db) == 3  # gateway's and orders' own rows, and the edge
        recent = all_span_red(db, now - timedelta(minutes=15), now)
        scanned = edge_span_red(db, "gateway", "orders", now - timedelta(minutes=15), now)
    assert recent.start == now - timedelta(minutes=15)
    assert recent.edges[("gateway", "orders")].count == scanned.count == 18
    assert recent.edges[("gateway", "orders")].buckets == scanned.buckets
    # Six minutes later the minute 10 minutes ago has left: the job rebuilds the sums.
    later = now + timedelta(minutes=6)
    with qd.store.session(write=True) as db:
        roll_up_spans(db, later, now_ns=received + 60 * SECOND)
    with qd.store.session() as db:
        slid = all_span_red(db, later - timedelta(minutes=15), later)
    assert slid.start == later - timedelta(minutes=15)
    assert slid.edges[("gateway", "orders")].count == 11


def recent_sums(db) -> int:
    return db.scalar(select(func.count()).select_from(SpanRedRecent))


def test_the_scheduler_runs_the_job_and_its_runs_are_recorded(qd, spans_at, receive):
    receive([spans_at().span(1, "orders")], time.time_ns() - 60 * SECOND)
    service = CollectionService(qd)
    service.start()
    try:
        assert service.scheduler.get_job(JOB_NAME) is not None

        def recorded():
            with qd.store.session() as db:
                return db.scalars(
                    select(CollectorRun).where(CollectorRun.source == JOB_NAME)
                ).first()

        run = wait_for(recorded, "the span RED job's first run", 30)
    finally:
        service.stop()
    assert run.ok and run.counts["spans"] == 1
