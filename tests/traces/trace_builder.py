"""Build spans and whole traces for the search, detail and page tests, and store them."""

from __future__ import annotations

from collections.abc import Iterable

from app.store.traces import write_spans
from collectors.spans import SpanRecord

T0 = 1_764_000_000_000_000_000  # ns: 2025-11-24T16:00:00Z
MS = 1_000_000


def trace_id(n: int) -> str:
    return f"{n:032x}"


def span(
    trace: int,
    n: int,
    *,
    parent: int | None = None,
    service: str = "orders",
    name: str | None = None,
    start_ms: float = 0,
    duration_ms: float = 10,
    error: bool = False,
    attributes: dict | None = None,
    events: tuple = (),
    at_ns: int = T0,
) -> SpanRecord:
    """A span of trace `trace`, id `n`, starting `start_ms` after `at_ns`."""
    return SpanRecord(
        trace_id=trace_id(trace),
        span_id=f"{n:016x}",
        parent_span_id="" if parent is None else f"{parent:016x}",
        service=service,
        name=name or f"op-{n}",
        start_ns=at_ns + int(start_ms * MS),
        duration_ns=int(duration_ms * MS),
        status_code=2 if error else 0,
        attributes=attributes or {},
        events=events,
        events_count=len(events),
    )


def checkout(trace: int = 1, *, at_ns: int = T0, slow_charge_ms: float = 60, extra=()) -> list:
    """gateway → orders → payments, and gateway → inventory after orders returns.

    0 ms  gateway GET /checkout ........................................ 120 ms
    5 ms    orders create ................................ 85 ms
    10 ms     payments charge (error) ............ 70 ms      (60 ms by default)
    90 ms   inventory reserve ...................... 110 ms
    """
    return [
        span(trace, 1, service="gateway", name="GET /checkout", duration_ms=120,
             attributes={"http.method": "GET", "resource.deployment.environment": "prod"},
             at_ns=at_ns),
        span(trace, 2, parent=1, service="orders", name="create", start_ms=5, duration_ms=80,
             at_ns=at_ns),
        span(trace, 3, parent=2, service="payments", name="charge", start_ms=10,
             duration_ms=slow_charge_ms, error=True, attributes={"http.status_code": 500,
             "retry": True}, at_ns=at_ns),
        span(trace, 4, parent=1, service="inventory", name="reserve", start_ms=90,
             duration_ms=20, at_ns=at_ns),
        *extra,
    ]  # fmt: skip


def store_spans(engine, spans: Iterable[SpanRecord]) -> None:
    """Write spans through the real store path, in one transaction."""
    with engine.begin() as connection:
        write_spans(connection, list(spans))
