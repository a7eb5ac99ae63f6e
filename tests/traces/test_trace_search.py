"""Trace search: each filter narrows the results, and span filters must fit one span (Jaeger).

Runs on SQLite and PostgreSQL (`store_url`): the tag filter reads JSON differently on each.
"""

from __future__ import annotations

import functools

import pytest
from sqlalchemy.orm import Session

from app.queries.traces import TraceSearch, search_traces, service_operations, trace_services
from app.store.db import create_store_engine
from tests.traces.trace_builder import MS, T0, checkout, span, store_spans, trace_id

SECOND = 1_000_000_000


@pytest.fixture
def engine(store_url):
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def fleet(engine):
    """Trace 1: the checkout (error in payments). Traces 2-6: quick orders calls, one a minute
    apart after it, trace 4 with a slow `orders` span and trace 5 tagged region=eu-west."""
    spans = checkout(1)
    for n in range(2, 7):
        at = T0 + n * 60 * SECOND
        slow = 400 if n == 4 else 20
        attributes = {"region": "eu-west"} if n == 5 else {"region": "us-east"}
        spans += [
            span(n, 1, service="gateway", name="GET /orders", duration_ms=slow + 10, at_ns=at),
            span(n, 2, parent=1, service="orders", name="list", start_ms=2,
                 duration_ms=slow, attributes=attributes, at_ns=at),
        ]  # fmt: skip
    store_spans(engine, spans)
    return engine


def found(engine, windowed_from: int | None = None, **filters) -> list[int]:
    options = {} if windowed_from is None else {"windowed_from": windowed_from}
    with Session(engine) as db:
        page = search_traces(db, TraceSearch(**filters), **options)
    return [int(t.trace_id, 16) for t in page.traces]


def test_without_filters_every_trace_comes_newest_first(fleet):
    assert found(fleet) == [6, 5, 4, 3, 2, 1]


def test_service_keeps_traces_with_a_span_of_that_service(fleet):
    assert found(fleet, service="payments") == [1]
    assert found(fleet, service="orders") == [6, 5, 4, 3, 2, 1]
    assert found(fleet, service="nobody") == []


def test_operation_keeps_traces_with_a_span_of_that_name(fleet):
    assert found(fleet, operation="reserve") == [1]
    assert found(fleet, service="orders", operation="list") == [6, 5, 4, 3, 2]


def test_min_and_max_duration_bound_a_span(fleet):
    assert found(fleet, min_ns=300 * MS) == [4]
    # Trace 1's root lasts 120 ms; the quick traces' spans are 20 and 30 ms.
    assert found(fleet, min_ns=100 * MS, max_ns=200 * MS) == [1]
    assert found(fleet, max_ns=15 * MS) == []


def test_error_keeps_traces_with_an_error_span(fleet):
    assert found(fleet, error=True) == [1]
    assert found(fleet, error=True, service="gateway") == []


def test_service_and_duration_must_fit_the_same_span(fleet):
    # Trace 1 has a 120 ms span (gateway) and a payments span (60 ms), never both at once.
    assert found(fleet, service="payments", min_ns=100 * MS) == []
    assert found(fleet, service="payments", min_ns=50 * MS) == [1]
    assert found(fleet, service="orders", min_ns=300 * MS) == [4]


def test_a_tag_matches_a_span_attribute_as_text(fleet):
    assert found(fleet, tags=(("region", "eu-west"),)) == [5]
    assert found(fleet, tags=(("http.status_code", "500"),)) == [1]
    assert found(fleet, tags=(("retry", "true"),)) == [1]
    assert found(fleet, tags=(("http.status_code", "200"),)) == []


def test_a_tag_matches_a_resource_attribute(fleet):
    assert found(fleet, tags=(("deployment.environment", "prod"),)) == [1]
    assert found(fleet, tags=(("resource.deployment.environment", "prod"),)) == [1]


def test_several_tags_and_a_service_combine(fleet):
    assert found(fleet, service="orders", tags=(("region", "us-east"),)) == [6, 4, 3, 2]
    both = (("region", "us-east"), ("http.status_code", "500"))
    assert found(fleet, tags=both) == []


def test_the_time_range_is_on_the_trace_start(fleet):
    assert found(fleet, since_ns=T0 + 3 * 60 * SECOND) == [6, 5, 4, 3]
    assert found(fleet, until_ns=T0 + 3 * 60 * SECOND) == [2, 1]
    window = {"since_ns": T0 + 2 * 60 * SECOND, "until_ns": T0 + 5 * 60 * SECOND}
    assert found(fleet, **window) == [4, 3, 2]
    assert found(fleet, service="orders", min_ns=300 * MS, since_ns=T0 + 5 * 60 * SECOND) == []


def test_limit_and_offset_page_through_and_say_when_more_exist(fleet):
    with Session(fleet) as db:
        first = search_traces(db, TraceSearch(limit=4))
        rest = search_traces(db, TraceSearch(limit=4, offset=4))
    assert [t.trace_id for t in first.traces] == [trace_id(n) for n in (6, 5, 4, 3)]
    assert first.more is True
    assert [t.trace_id for t in rest.traces] == [trace_id(n) for n in (2, 1)]
    assert rest.more is False


def test_slowest_first_orders_by_trace_duration(fleet):
    assert found(fleet, order="slowest")[:2] == [4, 1]


def test_a_summary_carries_root_duration_count_error_and_services(fleet):
    with Session(fleet) as db:
        (summary,) = search_traces(db, TraceSearch(service="payments")).traces
    body = summary.to_json()
    assert body["trace_id"] == trace_id(1)
    assert (body["root_service"], body["root_operation"]) == ("gateway", "GET /checkout")
    assert body["start_at"] == "2025-11-24T16:00:00.000000Z"
    assert body["duration_ms"] == 120.0
    assert body["span_count"] == 4
    assert body["error"] is True
    assert body["services"] == ["gateway", "inventory", "orders", "payments"]


def test_the_form_lists_services_and_a_services_operations(fleet):
    with Session(fleet) as db:
        assert trace_services(db) == ["gateway", "inventory", "orders", "payments"]
        assert service_operations(db, "gateway") == ["GET /checkout", "GET /orders"]
        assert service_operations(db, "orders") == ["create", "list"]
        assert service_operations(db, "nobody") == []


@pytest.mark.parametrize("windowed_from", [1, 10_000], ids=["windows", "one-sort"])
def test_newest_first_over_days_is_exact_whichever_window_holds_the_page(engine, windowed_from):
    # 48 traces an hour apart; every third has a `rare` span, so the newest page of a `rare`
    # search spans several of the look-back windows (when the search uses them).
    hour = 3600 * SECOND
    spans = []
    for n in range(1, 49):
        at = T0 + n * hour
        spans.append(span(n, 1, service="gateway", duration_ms=50, at_ns=at))
        if n % 3 == 0:
            spans.append(span(n, 2, parent=1, service="rare", duration_ms=40, at_ns=at))
    store_spans(engine, spans)
    rare = [n for n in range(48, 0, -1) if n % 3 == 0]
    search = functools.partial(found, engine, windowed_from)
    assert search(service="rare", limit=4) == rare[:4]
    assert search(service="rare", limit=4, offset=5) == rare[5:9]
    assert search(service="rare", limit=100) == rare
    assert search(service="rare", limit=2, until_ns=T0 + 40 * hour) == [39, 36]
    assert search(service="rare", since_ns=T0 + 40 * hour) == [48, 45, 42]
    assert search(service="gateway", limit=3, offset=45) == [3, 2, 1]
    with Session(engine) as db:
        more = [
            search_traces(db, TraceSearch(service="rare", limit=n), windowed_from=windowed_from)
            for n in (15, 16)
        ]
    assert [page.more for page in more] == [True, False]
