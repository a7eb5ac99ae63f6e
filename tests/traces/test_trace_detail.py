"""One trace as a tree with its critical path, and two traces compared span by span."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.queries.traces import compare_traces, get_trace
from app.store.db import create_store_engine
from tests.traces.trace_builder import MS, checkout, span, store_spans, trace_id


@pytest.fixture
def engine(sqlite_url):
    engine = create_store_engine(sqlite_url)
    yield engine
    engine.dispose()


def load(engine, n: int):
    with Session(engine) as db:
        return get_trace(db, trace_id(n))


def test_an_unknown_trace_is_none(engine):
    assert load(engine, 404) is None


def test_spans_come_depth_first_with_parent_links_and_depths(engine):
    store_spans(engine, checkout(1))
    detail = load(engine, 1)
    assert [(s.name, s.depth) for s in detail.spans] == [
        ("GET /checkout", 0),
        ("create", 1),
        ("charge", 2),
        ("reserve", 1),
    ]
    assert [c.name for c in detail.roots[0].children] == ["create", "reserve"]
    body = detail.to_json()
    assert body["spans"][2]["parent_span_id"] == body["spans"][1]["span_id"]
    assert body["spans"][2]["status"] == "error"
    assert body["spans"][2]["offset_ms"] == 10.0
    assert [s["service"] for s in body["services"]] == [
        "gateway",
        "inventory",
        "orders",
        "payments",
    ]
    assert body["services"][3]["errors"] == 1


def test_the_critical_path_follows_what_each_parent_waited_for(engine):
    store_spans(engine, checkout(1))
    detail = load(engine, 1)
    by_name = {s.name: s for s in detail.spans}

    def ms(pieces):
        """Pieces as whole ms after the trace's start."""
        start = detail.start_ns
        return [(round((a - start) / MS), round((b - start) / MS)) for a, b in pieces]

    # gateway waits for reserve (90-110) and before it for create (5-85), which waits for charge.
    assert ms(by_name["GET /checkout"].critical) == [(0, 5), (85, 90), (110, 120)]
    assert ms(by_name["reserve"].critical) == [(90, 110)]
    assert ms(by_name["create"].critical) == [(5, 10), (70, 85)]
    assert ms(by_name["charge"].critical) == [(10, 70)]
    total = sum(s.critical_ns for s in detail.spans)
    assert total == detail.duration_ns
    assert [s.name for s in detail.critical_path] == [
        "GET /checkout",
        "create",
        "charge",
        "reserve",
    ]


def test_a_child_overlapped_by_a_later_one_is_off_the_critical_path(engine):
    store_spans(engine, [
        span(2, 1, name="root", duration_ms=100),
        span(2, 2, parent=1, name="early-long", start_ms=0, duration_ms=90),
        span(2, 3, parent=1, name="late", start_ms=10, duration_ms=85),
        span(2, 4, parent=1, name="short", start_ms=20, duration_ms=5),
    ])  # fmt: skip
    detail = load(engine, 2)
    names = {s.name for s in detail.critical_path}
    assert "late" in names and "short" not in names
    by_name = {s.name: s for s in detail.spans}
    # early-long holds up the root only for the 10 ms before "late" started.
    assert by_name["early-long"].critical_ns == 10 * MS


def test_a_span_whose_parent_never_arrived_is_a_marked_root(engine):
    store_spans(engine, [span(3, 2, parent=1, service="payments", duration_ms=5)])
    detail = load(engine, 3)
    assert detail.roots[0].orphan is True
    assert detail.spans[0].span_id == f"{2:016x}"


def test_a_parent_cycle_from_a_sender_does_not_hang_or_lose_spans(engine):
    store_spans(engine, [
        span(4, 1, parent=2, name="a", duration_ms=10),
        span(4, 2, parent=1, name="b", start_ms=1, duration_ms=5),
        span(4, 3, parent=3, name="self", start_ms=2, duration_ms=1),
    ])  # fmt: skip
    detail = load(engine, 4)
    assert sorted(s.name for s in detail.spans) == ["a", "b", "self"]
    assert len({s.span_id for s in detail.spans}) == 3


def test_compare_marks_added_removed_slower_and_same_spans(engine):
    retry = span(
        6, 5, parent=2, service="payments", name="charge-retry", start_ms=75, duration_ms=5
    )
    store_spans(engine, checkout(5))
    store_spans(engine, checkout(6, slow_charge_ms=90, extra=[retry])[:3] + [retry])
    a, b = load(engine, 5), load(engine, 6)
    rows = compare_traces(a, b)
    changes = {row.path[-1][1]: row.change for row in rows}
    assert changes == {
        "GET /checkout": "same",
        "create": "same",
        "charge": "slower",
        "charge-retry": "added",
        "reserve": "removed",
    }
    slower = next(r for r in rows if r.change == "slower")
    assert slower.delta_ns == 30 * MS
    assert [r.depth for r in rows] == [0, 1, 2, 2, 1]


def test_compare_pairs_repeated_siblings_in_start_order(engine):
    def calls(n, durations):
        root = span(n, 1, name="root", duration_ms=200)
        return [root] + [
            span(n, 10 + i, parent=1, name="query", start_ms=i * 20, duration_ms=d)
            for i, d in enumerate(durations)
        ]

    store_spans(engine, calls(7, [10, 10, 10]) + calls(8, [10, 40]))
    rows = compare_traces(load(engine, 7), load(engine, 8))
    assert [r.change for r in rows] == ["same", "same", "slower", "removed"]
