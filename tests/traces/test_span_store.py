"""Spans are stored once, however often they are sent, and each trace's summary stays exact."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.models import Span, Trace
from app.store.db import create_store_engine
from app.store.traces import write_spans
from collectors.spans import SpanRecord

T0 = 1_764_000_000_000_000_000  # ns


def span(
    trace: int,
    n: int,
    *,
    parent: int | None = None,
    service="orders",
    error=False,
    start_ms=0,
    duration_ms=10,
) -> SpanRecord:
    return SpanRecord(
        trace_id=f"{trace:032x}",
        span_id=f"{n:016x}",
        parent_span_id="" if parent is None else f"{parent:016x}",
        service=service,
        name=f"op-{n}",
        start_ns=T0 + start_ms * 1_000_000,
        duration_ns=duration_ms * 1_000_000,
        status_code=2 if error else 0,
    )


@pytest.fixture
def engine(store_url):
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


def summary(engine, trace: int):
    with engine.connect() as connection:
        return (
            connection.execute(select(Trace).where(Trace.trace_id == f"{trace:032x}"))
            .mappings()
            .one()
        )


def test_a_resent_batch_stores_nothing_twice(engine):
    batch = [span(1, 1), span(1, 2, parent=1), span(2, 3)]
    with engine.begin() as connection:
        first = write_spans(connection, batch)
    with engine.begin() as connection:
        again = write_spans(connection, batch + [span(2, 4, parent=3)])
    assert (first.stored, first.duplicates) == (3, 0)
    assert (again.stored, again.duplicates) == (1, 3)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Span)) == 4
    assert summary(engine, 1)["span_count"] == 2
    assert summary(engine, 2)["span_count"] == 2


def test_a_trace_sent_in_pieces_by_its_services_has_one_exact_summary(engine):
    # The child service exports first; the root arrives later from the gateway.
    with engine.begin() as connection:
        write_spans(
            connection,
            [span(7, 2, parent=1, service="payments", start_ms=5, duration_ms=50, error=True)],
        )
    held = summary(engine, 7)
    assert (held["root_service"], held["span_count"], held["error_count"]) == ("", 1, 1)
    with engine.begin() as connection:
        write_spans(connection, [span(7, 1, service="gateway", start_ms=0, duration_ms=80)])
    held = summary(engine, 7)
    assert (held["root_service"], held["root_operation"]) == ("gateway", "op-1")
    assert held["span_count"] == 2 and held["error_count"] == 1
    assert held["start_ns"] == T0 and held["end_ns"] == T0 + 80_000_000
    # A later child that ends after the root widens the trace; the root stays the root.
    with engine.begin() as connection:
        write_spans(
            connection, [span(7, 3, parent=2, service="inventory", start_ms=70, duration_ms=30)]
        )
    held = summary(engine, 7)
    assert held["root_service"] == "gateway" and held["end_ns"] == T0 + 100_000_000


def test_concurrent_exports_of_one_trace_add_up(engine):
    writers = 4
    per_writer = 50
    barrier = threading.Barrier(writers)
    errors = []

    def export(w: int) -> None:
        spans = [
            span(9, 1 + w * per_writer + i, parent=1, service=f"svc-{w}") for i in range(per_writer)
        ]
        try:
            barrier.wait()
            for part in range(0, per_writer, 10):
                with engine.begin() as connection:
                    write_spans(connection, spans[part : part + 10])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert summary(engine, 9)["span_count"] == writers * per_writer
