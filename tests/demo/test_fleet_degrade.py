"""Degrading a demo service in Consul KV changes what its real processes do, and their traces.

A fleet of its own (its own Consul double, no balancers) exporting to a test-side OTLP sink.
Each HTTP instance watches `quarterdeck/degrade/<service>` with fleet.degrade.DegradeSwitch.
"""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from demo.consul import ConsulDouble
from demo.fleet.supervisor import DemoFleet
from tests.demo.conftest import all_passing, get_text, metric_sum
from tests.demo.otlp_sink import OtlpSink, ReceivedSpan
from tests.fixtures.processes import wait_for

SKIPPED = "degraded: call skipped"


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    """The receiver the fleet exports its spans to."""
    receiver = OtlpSink().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def consul_double() -> Iterator[ConsulDouble]:
    """The Consul double the fleet registers in and reads its degrade switches from."""
    double = ConsulDouble().start()
    yield double
    double.stop()


@pytest.fixture(scope="module")
def fleet(sink, consul_double, tmp_path_factory) -> Iterator[DemoFleet]:
    """A traced fleet with no traffic of its own, every instance passing."""
    fleet = DemoFleet(
        tmp_path_factory.mktemp("degrade-fleet"),
        consul_double.url,
        tools=(),
        check_interval="1s",
        clients=0,
        rps=0,
        restart_after_s=1.0,
        traces_url=sink.url,
    )
    fleet.start()
    try:
        if not fleet.wait_ready(90):
            logs = {p.name: p.read_text()[-2000:] for p in fleet.logs_dir.glob("*.log")}
            pytest.fail(f"the fleet did not come up: {logs}", pytrace=False)
        wait_for(lambda: all_passing(consul_double, fleet), "every instance passing", 60)
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def degrade(consul_double) -> Iterator:
    """Return a writer of degrade switches; every switch is deleted after the test."""
    written: list[str] = []

    def write(service: str, **record) -> None:
        key = f"quarterdeck/degrade/{service}"
        written.append(key)
        consul_double.kv_put(key, json.dumps({"reason": "test", "by": "tester", **record}))

    yield write
    for key in written:
        consul_double.kv_delete(key)


def get(base: str, path: str) -> tuple[int, dict, str]:
    """GET with a fresh W3C trace; return the status, the JSON body and the trace id."""
    where = urlsplit(base)
    trace_id = secrets.token_hex(16)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read()), trace_id
    finally:
        connection.close()


def answer(fleet: DemoFleet, path: str, accept) -> tuple[dict, str]:
    """Ask every gateway until one answers 200 with a body `accept` likes; return it."""

    def attempt() -> tuple[dict, str] | None:
        for base in fleet.gateway_urls():
            status, body, trace_id = get(base, path)
            if status == 200 and accept(body):
                return body, trace_id
        return None

    return wait_for(attempt, f"a 200 from the gateways for {path}", 20)


def spans_of(sink: OtlpSink, trace_id: str, service: str, kind: str) -> list[ReceivedSpan]:
    return [s for s in sink.trace(trace_id) if s.service == service and s.kind == kind]


def server_span(sink: OtlpSink, trace_id: str, service: str) -> ReceivedSpan:
    """Wait for the service's SERVER span of the trace (its own CLIENT spans came before it)."""
    [span] = wait_for(lambda: spans_of(sink, trace_id, service, "server"), f"{service}'s span", 20)
    return span


def inventory_requests(fleet: DemoFleet, route: str) -> float:
    inventory = fleet.instance("inventory-1")
    text = get_text(f"{inventory.url}/metrics")
    return metric_sum(text, "http_server_request_duration_seconds_count", http_route=route)


def test_a_gateway_degraded_with_live_stock_off_answers_without_asking_inventory(
    fleet, sink, degrade
):
    body, trace_id = answer(fleet, "/api/stock", lambda b: "degraded" not in b)
    wait_for(lambda: spans_of(sink, trace_id, "inventory", "server"), "inventory's span", 20)
    degrade("gateway", level="partial", features_off=["live-stock"])
    # Both gateway instances watch the key: each one answers degraded.
    for base in fleet.gateway_urls():
        status, body, _ = wait_for(
            lambda base=base: (got := get(base, "/api/stock"))[1].get("degraded") and got,
            f"{base} degraded",
            10,
        )
        assert status == 200
        assert body["degraded"] == {"level": "partial", "skipped": ["live-stock"]}
    before = inventory_requests(fleet, "/stock")
    traces = [get(base, "/api/stock")[2] for base in fleet.gateway_urls() for _ in range(3)]
    assert inventory_requests(fleet, "/stock") == before  # nobody asked inventory
    span = server_span(sink, traces[-1], "gateway")
    assert span.attributes["quarterdeck.degrade.level"] == "partial"
    assert span.attributes["quarterdeck.degrade.features_off"] == ["live-stock"]
    assert span.events == [SKIPPED]
    assert spans_of(sink, traces[-1], "gateway", "client") == []


def test_deleting_the_switch_brings_the_call_back(fleet, sink, consul_double, degrade):
    degrade("gateway", features_off=["live-stock"])
    answer(fleet, "/api/stock", lambda b: "degraded" in b)
    consul_double.kv_delete("quarterdeck/degrade/gateway")
    for base in fleet.gateway_urls():
        wait_for(lambda base=base: "degraded" not in get(base, "/api/stock")[1], base, 10)
    before = inventory_requests(fleet, "/stock")
    _, trace_id = answer(fleet, "/api/stock", lambda b: "degraded" not in b)
    assert inventory_requests(fleet, "/stock") > before
    span = server_span(sink, trace_id, "gateway")
    assert "quarterdeck.degrade.level" not in span.attributes and span.events == []
    wait_for(lambda: spans_of(sink, trace_id, "inventory", "server"), "inventory's span", 20)


def test_orders_degraded_with_reservations_off_take_checkouts_without_reserving_stock(
    fleet, sink, degrade
):
    degrade("orders", level="partial", features_off=["reservations"])
    answer(fleet, "/api/checkout", lambda b: True)  # the upstreams are known

    def degraded_checkout() -> ReceivedSpan | None:
        _, trace_id = answer(fleet, "/api/checkout", lambda b: True)
        span = server_span(sink, trace_id, "orders")
        return span if span.events == [SKIPPED] else None

    orders = wait_for(degraded_checkout, "a checkout through degraded orders", 20)
    trace_id = orders.trace_id
    assert orders.attributes["quarterdeck.degrade.features_off"] == ["reservations"]
    # It still charged the payment, and called nothing else.
    [charge] = spans_of(sink, trace_id, "orders", "client")
    assert charge.attributes["url.full"].endswith("/charge")
    wait_for(lambda: spans_of(sink, trace_id, "payments", "server"), "payments' span", 20)
    assert spans_of(sink, trace_id, "inventory", "server") == []
