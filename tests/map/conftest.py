"""The map's fixtures: both stores, spans received when the test says, a catalog, an API client."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from app.models import Span
from app.store.catalog import apply_catalog_update
from app.store.span_red import LAG_NS, roll_up_spans
from app.store.traces import write_spans
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord
from collectors.spans import SpanRecord


def pytest_generate_tests(metafunc):
    """Run every map test that uses the app's store on SQLite and on PostgreSQL."""
    if "app_store_url" in metafunc.fixturenames:
        metafunc.parametrize("app_store_url", ["sqlite", "postgresql"], indirect=True)


def now_minute() -> datetime:
    """The start of the current minute, so a test's spans stay in one minute's row."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000


class SpanMaker:
    """Build spans of a trace: `call(parent, service)` adds a child span."""

    def __init__(self, start: datetime) -> None:
        self.start_ns = ns(start)
        self.next_id = 1

    def span(
        self,
        trace: int,
        service: str,
        *,
        parent: SpanRecord | None = None,
        kind: int = 2,
        duration_ms: float = 10,
        error: bool = False,
        offset_ms: float = 0,
    ) -> SpanRecord:
        span_id = self.next_id
        self.next_id += 1
        return SpanRecord(
            trace_id=f"{trace:032x}",
            span_id=f"{span_id:016x}",
            parent_span_id=parent.span_id if parent is not None else "",
            service=service,
            name=f"op-{span_id}",
            start_ns=self.start_ns + int(offset_ms * 1e6),
            duration_ns=int(duration_ms * 1e6),
            kind=kind,
            status_code=2 if error else 0,
        )


@pytest.fixture
def spans_at() -> Callable[..., SpanMaker]:
    """Return a factory of span makers starting at a given time (default: this minute)."""
    return lambda start=None: SpanMaker(start or now_minute())


@pytest.fixture
def receive(qd) -> Callable[[Sequence[SpanRecord], int | None], int]:
    """Store spans through the span store, received at `received_ns` (default: now)."""

    def store(spans: Sequence[SpanRecord], received_ns: int | None = None) -> int:
        with qd.store.engine.begin() as connection:
            write_spans(connection, spans)
            if received_ns is not None:
                ids = [(s.trace_id, s.span_id) for s in spans]
                for trace_id, span_id in ids:
                    connection.execute(
                        update(Span)
                        .where(Span.trace_id == trace_id, Span.span_id == span_id)
                        .values(received_ns=received_ns)
                    )
        return received_ns if received_ns is not None else time.time_ns()

    return store


@pytest.fixture
def roll_up(qd) -> Callable[[int | None], object]:
    """Run the span RED job up to spans received by `upto_ns` (default: everything so far)."""

    def run(upto_ns: int | None = None):
        upto_ns = time.time_ns() if upto_ns is None else upto_ns
        with qd.store.session(write=True) as db:
            return roll_up_spans(db, qd.clock(), now_ns=upto_ns + LAG_NS)

    return run


def service_record(
    name: str,
    *,
    health: str = "passing",
    upstreams: Sequence[str] = (),
    tags: Sequence[str] = (),
    meta: dict | None = None,
    kind: str = "",
) -> ServiceRecord:
    """A catalog service with one instance whose one check is `health`."""
    check = CheckRecord(check_id=f"check-{name}", name="http", status=health)
    return ServiceRecord(
        name=name,
        tags=tuple(tags),
        meta=dict(meta or {}),
        kind=kind,
        instances=(
            InstanceRecord(id=f"{name}-1", node="node-1", address="10.0.0.1", checks=(check,)),
        ),
        upstreams=tuple(upstreams),
    )


@pytest.fixture
def catalog(qd) -> Callable[..., None]:
    """Store a complete catalog from Consul through the catalog store."""

    def store(*services: ServiceRecord, source: str = "consul") -> None:
        with qd.store.session(write=True) as db:
            apply_catalog_update(db, source, CatalogUpdate(qd.clock(), services))

    return store


@pytest.fixture
def api(qd, make_token):
    """Return a GET function on the API with a viewer's token."""
    from app.factory import create_app

    app = create_app(qd=qd)
    client = app.test_client()
    token = make_token("map-reader", "viewer")

    def get(path: str, **params):
        headers = {"Authorization": f"Bearer {token}"}
        return client.get(path, query_string=params, headers=headers)

    get.client = client
    return get
