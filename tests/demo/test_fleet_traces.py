"""The demo fleet sends real traces: OpenTelemetry SDK, OTLP/HTTP, W3C context over its calls.

A fleet of its own (its own Consul double, no balancers) exports to a test-side OTLP sink that
decodes the protobuf each process sends and checks the ingest token.
"""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from demo.consul import ConsulDouble
from demo.fleet.children import PROJECT_ROOT
from demo.fleet.supervisor import DemoFleet, tracing_env
from tests.demo.conftest import all_passing
from tests.demo.otlp_sink import OtlpSink, ReceivedSpan
from tests.fixtures.processes import wait_for

TOKEN = "demo-ingest-" + secrets.token_hex(8)

CROSS_PROCESS_END_SLACK_NS = 50_000_000  # 50 ms: the server writes, then ends its span


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    """The receiver the traced fleet exports to (it wants the bearer token)."""
    receiver = OtlpSink(token=TOKEN).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def traced_fleet(sink, tmp_path_factory) -> Iterator[DemoFleet]:
    """A fleet sending its traces to the sink, with no traffic of its own."""
    double = ConsulDouble().start()
    fleet = DemoFleet(
        tmp_path_factory.mktemp("traced-fleet"),
        double.url,
        tools=(),
        check_interval="1s",
        clients=0,
        rps=0,
        restart_after_s=1.0,
        traces_url=sink.url,
        traces_token=TOKEN,
    )
    fleet.start()
    try:
        if not fleet.wait_ready(90):
            logs = {p.name: p.read_text()[-2000:] for p in fleet.logs_dir.glob("*.log")}
            pytest.fail(f"the traced fleet did not come up: {logs}", pytrace=False)
        wait_for(lambda: all_passing(double, fleet), "every instance passing", 60)
        yield fleet
    finally:
        fleet.stop()
        double.stop()


@pytest.fixture
def fleet(traced_fleet) -> Iterator[DemoFleet]:
    """The traced fleet; faults a test leaves behind are healed after it."""
    yield traced_fleet
    for instance in traced_fleet.instances:
        traced_fleet.heal(instance.instance_id)


def get(base: str, path: str, trace_id: str, parent_id: str = "") -> tuple[int, float]:
    """GET with a W3C traceparent naming our own (unsent) span; return status and seconds."""
    where = urlsplit(base)
    parent_id = parent_id or secrets.token_hex(8)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    started = time.monotonic()
    try:
        connection.request("GET", path, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def gateway(fleet: DemoFleet) -> str:
    """Return one gateway instance's URL."""
    return fleet.gateway_urls()[0]


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    """Index spans by span id."""
    return {s.span_id: s for s in spans}


def only(spans: list[ReceivedSpan], **match: str) -> ReceivedSpan:
    """Return the one span whose fields equal `match`."""
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.kind, s.name) for s in spans])
    return found[0]


def whole_trace(sink: OtlpSink, trace_id: str, count: int) -> list[ReceivedSpan]:
    """Wait until `count` spans of the trace have arrived; return them."""
    return wait_for(
        lambda: (spans := sink.trace(trace_id)) and len(spans) >= count and spans,
        f"{count} spans of trace {trace_id}",
        20,
    )


def full_checkout(fleet: DemoFleet, sink: OtlpSink, attempts: int = 30) -> list[ReceivedSpan]:
    """Make checkouts until one succeeds; return its trace once all of it has arrived."""
    for _ in range(attempts):
        trace_id = secrets.token_hex(16)
        status, _ = get(gateway(fleet), "/api/checkout", trace_id)
        if status == 200:
            return whole_trace(sink, trace_id, 7)
        time.sleep(0.2)  # the upstreams are still being discovered, or a 1 % error struck
    pytest.fail("no checkout succeeded")


def test_one_checkout_is_one_trace_with_spans_from_every_service_linked_across_processes(
    fleet, sink
):
    spans = full_checkout(fleet, sink)
    assert {s.service for s in spans} == {"gateway", "orders", "payments", "inventory"}
    parents = by_id(spans)
    gw_server = only(spans, service="gateway", kind="server")
    gw_client = only(spans, service="gateway", kind="client")
    orders_server = only(spans, service="orders", kind="server")
    orders_clients = [s for s in spans if s.service == "orders" and s.kind == "client"]
    inventory = only(spans, service="inventory", kind="server")
    payments = only(spans, service="payments", kind="server")
    assert len(orders_clients) == 2
    # The caller's traceparent was honoured: the gateway's span is the child of our span.
    assert gw_server.parent_span_id and gw_server.parent_span_id not in parents
    # Each hop is the child of the CLIENT span that called it, across processes.
    assert gw_client.parent_span_id == gw_server.span_id
    assert orders_server.parent_span_id == gw_client.span_id
    assert {c.parent_span_id for c in orders_clients} == {orders_server.span_id}
    callers = {inventory.parent_span_id, payments.parent_span_id}
    assert callers == {c.span_id for c in orders_clients}
    # Server spans: "{method} {route}" and the HTTP semantic conventions.
    assert (gw_server.name, orders_server.name) == ("GET /api/checkout", "POST /orders")
    assert (inventory.name, payments.name) == ("POST /reserve", "POST /charge")
    assert gw_server.attributes["http.request.method"] == "GET"
    assert gw_server.attributes["http.route"] == "/api/checkout"
    assert gw_server.attributes["http.response.status_code"] == 200
    assert gw_server.attributes["server.address"] == "127.0.0.1"
    assert gw_server.status == "unset"
    # Client spans name the callee's address, and it is the instance that answered.
    ports = {i.port: i for i in fleet.instances}
    called = ports[gw_client.attributes["server.port"]]
    assert called.service == "orders"
    assert orders_server.resource["service.instance.id"] == called.instance_id
    assert gw_client.attributes["server.address"] == "127.0.0.1"
    assert gw_client.attributes["http.request.method"] == "POST"
    assert gw_client.attributes["http.response.status_code"] == 200
    # The resource says which service, instance and version sent each span.
    for span in spans:
        instance = fleet.instance(span.resource["service.instance.id"])
        assert instance.service == span.service
        assert span.resource["service.version"] == instance.version
    # The timing nests: each child starts inside its parent; an in-process child also ends
    # inside it. A server span ends after its process has written the response, so the
    # client in the other process may have read it and ended first (seen on a loaded machine:
    # 0.3 ms): across processes the end may trail by a little, never by a request's length.
    for span in spans:
        parent = parents.get(span.parent_span_id)
        if parent is None:
            continue
        assert parent.start_ns <= span.start_ns <= parent.end_ns
        if span.kind == "server" and parent.kind == "client":
            assert span.end_ns <= parent.end_ns + CROSS_PROCESS_END_SLACK_NS
        else:
            assert span.end_ns <= parent.end_ns
    # Every export carried the token; none was refused.
    assert sink.refused == 0


def test_health_checks_and_scrapes_make_no_spans(fleet, sink):
    full_checkout(fleet, sink)
    routes = {s.attributes.get("url.path") for s in sink.received() if s.kind == "server"}
    assert "/health" not in routes and "/metrics" not in routes


def test_payments_failing_shows_as_error_spans_up_the_call_chain(fleet, sink):
    full_checkout(fleet, sink)  # every hop knows its upstreams
    for instance in fleet.instances:
        if instance.service == "payments":
            fleet.fault(instance.instance_id, "errors")
    for _ in range(40):
        trace_id = secrets.token_hex(16)
        status, _ = get(gateway(fleet), "/api/checkout", trace_id)
        if status == 502:
            break
    else:
        pytest.fail("payments in fault never failed a checkout")
    spans = whole_trace(sink, trace_id, 7)
    payments = only(spans, service="payments", kind="server")
    assert payments.status == "error"
    assert payments.attributes["http.response.status_code"] == 503
    assert payments.attributes["error.type"] == "503"
    parents = by_id(spans)
    charge = parents[payments.parent_span_id]
    assert (charge.service, charge.kind, charge.status) == ("orders", "client", "error")
    assert charge.attributes["http.response.status_code"] == 503
    orders = only(spans, service="orders", kind="server")
    gw = only(spans, service="gateway", kind="server")
    for span in (orders, gw):
        assert span.status == "error"
        assert span.attributes["http.response.status_code"] == 502
        assert span.attributes["error.type"] == "502"


def test_a_sometimes_slow_inventory_shows_as_the_long_span_in_slow_traces(fleet, sink):
    full_checkout(fleet, sink)
    fleet.fault("inventory-1", "spikes")
    for _ in range(60):
        trace_id = secrets.token_hex(16)
        status, seconds = get(gateway(fleet), "/api/stock", trace_id)
        if status == 200 and seconds > 0.8:
            break
    else:
        pytest.fail("a spiking inventory never made a stock request slow")
    spans = whole_trace(sink, trace_id, 3)
    inventory = only(spans, service="inventory", kind="server")
    gw = only(spans, service="gateway", kind="server")
    assert inventory.name == "GET /stock"
    assert inventory.duration_s >= 0.8
    # Nearly all of the gateway's time is spent waiting on inventory.
    assert inventory.duration_s / gw.duration_s > 0.9


def test_the_traffic_generator_starts_the_root_spans_over_http_and_websocket(
    traced_fleet, sink, tmp_path
):
    push = next(i for i in traced_fleet.instances if i.service == "push")
    log_path = tmp_path / "traffic.log"
    with log_path.open("wb") as log:
        traffic = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "demo.fleet.traffic",
                "--http",
                gateway(traced_fleet),
                "--ws",
                f"ws://{push.address}/ws",
                "--rps",
                "5",
                "--clients",
                "2",
                "--traces",
                sink.url,
            ],
            cwd=PROJECT_ROOT,
            env=_env_with_token(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:

        def rooted() -> tuple[ReceivedSpan, ReceivedSpan] | None:
            spans = sink.received()
            roots = [s for s in spans if s.service == "traffic" and not s.parent_span_id]
            ids = {s.span_id: s for s in roots}
            gw = next(
                (s for s in spans if s.service == "gateway" and s.parent_span_id in ids), None
            )
            ws = next((s for s in spans if s.service == "push" and s.parent_span_id in ids), None)
            return (ids[gw.parent_span_id], ws) if gw and ws else None

        root, handshake = wait_for(rooted, "traffic's root spans with fleet children", 30)
    finally:
        traffic.terminate()
        traffic.wait(timeout=15)
    # A root says what it does: the client span is named by method and route template.
    assert root.kind == "client" and root.name in ("GET /api/checkout", "GET /api/stock")
    assert root.attributes["url.template"] == root.name.removeprefix("GET ")
    assert root.attributes["url.full"].startswith(gateway(traced_fleet) + "/api/")
    assert root.resource["service.instance.id"] == "traffic-1"
    assert handshake.name == "GET /ws" and handshake.kind == "server"
    assert handshake.attributes["http.response.status_code"] == 101
    assert handshake.resource["service.instance.id"] == push.instance_id
    assert traffic.returncode == 0, log_path.read_text()


def test_a_push_that_refuses_handshakes_sends_error_spans(fleet, sink):
    push = next(i for i in fleet.instances if i.service == "push")
    fleet.fault(push.instance_id, "refuse")
    time.sleep(0.1)  # the fault file is read per request, nothing to wait for but the write
    trace_id = secrets.token_hex(16)
    where = push.address.split(":")
    connection = http.client.HTTPConnection(where[0], int(where[1]), timeout=10)
    try:
        connection.request(
            "GET",
            "/ws",
            headers={
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
        assert connection.getresponse().status == 503
    finally:
        connection.close()
    (span,) = wait_for(lambda: sink.trace(trace_id), "the refused handshake's span", 20)
    assert (span.service, span.name, span.status) == ("push", "GET /ws", "error")
    assert span.attributes["http.response.status_code"] == 503


def _env_with_token() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.update(tracing_env(TOKEN))
    return env
