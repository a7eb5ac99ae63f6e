"""The spans one fleet instance makes, read from the SDK's InMemorySpanExporter, and an exporter
that never holds the fleet back when the receiver is down."""

from __future__ import annotations

import http.client
import logging
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from demo.consul import ConsulDouble
from demo.fleet.agent import ConsulAgent, Upstreams
from demo.fleet.children import PROJECT_ROOT
from demo.fleet.faults import FaultSwitch, write_fault
from demo.fleet.http_service import InstanceHTTPServer, ServiceInstance
from demo.fleet.metrics import InstanceMetrics
from demo.fleet.tools import free_ports
from demo.fleet.topology import SERVICES
from demo.fleet.tracing import FleetTracing, called_span, client_span
from tests.demo.otlp_sink import OtlpSink
from tests.fixtures.processes import wait_for


@pytest.fixture
def exported() -> InMemorySpanExporter:
    """Where the instance under test sends its spans."""
    return InMemorySpanExporter()


@pytest.fixture
def inventory(exported, tmp_path) -> Iterator[tuple[str, FleetTracing, Path]]:
    """An inventory instance served in this process, exporting to memory: (URL, tracing, faults)."""
    tracing = FleetTracing("inventory", "inventory-9", "1.12.0", None, exporter=exported)
    service = SERVICES["inventory"]
    instance = ServiceInstance(
        service,
        "inventory-9",
        "1.12.0",
        Upstreams(ConsulAgent("http://127.0.0.1:1"), ()),
        FaultSwitch(tmp_path / "inventory-9"),
        InstanceMetrics("inventory", "inventory-9"),
        tracing,
    )
    (port,) = free_ports(1)
    server = InstanceHTTPServer(port, instance)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", tracing, tmp_path
    server.shutdown()
    server.server_close()
    tracing.stop()


def request(url: str, method: str, path: str, headers: dict | None = None) -> int:
    """Make one request; return the status."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            method, path, body=b"{}" if method == "POST" else None, headers=headers or {}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def finished(tracing: FleetTracing, exported: InMemorySpanExporter, count: int = 1):
    """Wait for `count` spans (a server span ends just after its answer is sent); return them."""

    def ended():
        tracing.processor.force_flush(5000)
        return len(exported.get_finished_spans()) >= count

    wait_for(ended, f"{count} spans exported", 10)
    spans = exported.get_finished_spans()
    assert len(spans) == count, [s.name for s in spans]
    return spans


def test_a_request_received_is_a_server_span_that_continues_the_callers_trace(inventory, exported):
    url, tracing, _ = inventory
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{parent_id}-01"
    assert request(url, "POST", "/reserve", {"traceparent": traceparent}) == 200
    (span,) = finished(tracing, exported)
    assert span.kind is SpanKind.SERVER
    assert span.name == "POST /reserve"
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent_id
    assert span.parent.is_remote
    assert dict(span.attributes) == {
        "http.request.method": "POST",
        "http.route": "/reserve",
        "url.path": "/reserve",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": int(url.rsplit(":", 1)[1]),
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET
    resource = dict(span.resource.attributes)
    assert resource["service.name"] == "inventory"
    assert resource["service.instance.id"] == "inventory-9"
    assert resource["service.version"] == "1.12.0"


def test_a_request_without_a_traceparent_starts_a_trace_of_its_own(inventory, exported):
    url, tracing, _ = inventory
    assert request(url, "GET", "/stock") == 200
    (span,) = finished(tracing, exported)
    assert span.parent is None


def test_an_unknown_route_is_named_by_its_method_only_and_is_not_an_error(inventory, exported):
    url, tracing, _ = inventory
    assert request(url, "GET", "/nowhere?x=1") == 404
    (span,) = finished(tracing, exported)
    assert span.name == "GET"
    assert "http.route" not in span.attributes
    assert span.attributes["url.path"] == "/nowhere"
    assert span.attributes["http.response.status_code"] == 404
    assert span.status.status_code is StatusCode.UNSET


def test_a_5xx_answer_is_an_error_span_with_its_error_type(inventory, exported):
    url, tracing, faults = inventory
    write_fault(faults, "inventory-9", "errors")
    statuses = [request(url, "GET", "/stock") for _ in range(12)]
    assert 503 in statuses, statuses
    spans = finished(tracing, exported, len(statuses))
    failed = [s for s in spans if s.attributes["http.response.status_code"] >= 500]
    assert len(failed) == sum(1 for status in statuses if status >= 500)
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == str(span.attributes["http.response.status_code"])
    for span in spans:
        if span not in failed:
            assert "error.type" not in span.attributes


def test_a_call_made_is_a_client_span_whose_context_goes_into_the_request_headers(exported):
    tracing = FleetTracing("orders", "orders-9", "2.4.1", None, exporter=exported)
    headers: dict[str, str] = {}
    with client_span(tracing.tracer, "POST", "127.0.0.1", 1, "/charge", headers) as span:
        called_span(span, 0, ConnectionRefusedError(111, "Connection refused"))
    (span,) = finished(tracing, exported)
    assert span.kind is SpanKind.CLIENT and span.name == "POST"
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1, flags  # sampled (the SDK may add "random")
    assert trace_id == format(span.context.trace_id, "032x")
    assert span_id == format(span.context.span_id, "016x")
    assert span.attributes["url.full"] == "http://127.0.0.1:1/charge"
    assert span.attributes["error.type"] == "ConnectionRefusedError"
    assert "http.response.status_code" not in span.attributes
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    tracing.stop()


def test_without_an_endpoint_nothing_is_sent_and_calls_carry_no_context():
    tracing = FleetTracing("orders", "orders-9", "2.4.1", None)
    headers: dict[str, str] = {}
    with client_span(tracing.tracer, "POST", "127.0.0.1", 1, "/charge", headers) as span:
        called_span(span, 200)
    assert not tracing.enabled
    # The span is real (the SDK samples it), it just goes nowhere: the context still flows.
    assert "traceparent" in headers
    tracing.stop()


def test_an_exporter_refused_says_once_why_drops_the_spans_and_says_when_it_is_back(caplog):
    sink = OtlpSink(token="the-right-one").start()
    tracing = FleetTracing("orders", "orders-9", "2.4.1", sink.url)

    def one_span() -> None:
        with client_span(tracing.tracer, "POST", "127.0.0.1", 1, "/charge", {}) as span:
            called_span(span, 200)
        tracing.processor.force_flush(5000)

    try:
        with caplog.at_level(logging.INFO, logger="demo.fleet.tracing"):
            one_span()
            one_span()
            assert sink.refused == 2 and sink.received() == []
            sink.token = None  # the receiver takes anything now
            one_span()
    finally:
        tracing.stop()
        sink.stop()
    assert len(sink.received()) == 1
    messages = [r.getMessage() for r in caplog.records]
    complaints = [m for m in messages if "cannot send" in m]
    assert len(complaints) == 1, messages
    assert sink.url in complaints[0] and "401" in complaints[0]
    assert f"traces: {sink.url} answers again (2 spans dropped so far)" in messages


@pytest.fixture
def hanging_receiver() -> Iterator[OtlpSink]:
    """A receiver that takes connections and never answers."""
    sink = OtlpSink().start()
    sink.hang.set()
    yield sink
    sink.stop()


def test_an_instance_whose_receiver_hangs_answers_as_usual_and_stops_cleanly(
    hanging_receiver, tmp_path
):
    (port,) = free_ports(1)
    log_path = tmp_path / "inventory.log"
    with ConsulDouble() as double, log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "demo.fleet.instance",
                "inventory",
                "1",
                "--port",
                str(port),
                "--version",
                "1.12.0",
                "--consul",
                double.url,
                "--faults",
                str(tmp_path),
                "--traces",
                hanging_receiver.url,
            ],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: request(url, "GET", "/health") == 200, "inventory up", 30)
            slowest = 0.0
            deadline = time.monotonic() + 6  # three export timeouts
            answered = 0
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert request(url, "GET", "/stock") in (200, 500)
                slowest = max(slowest, time.monotonic() - started)
                answered += 1
            # An export waits up to 2 s for its receiver: no request ever waited for one.
            assert slowest < 2.0, slowest
            assert answered > 50
            assert hanging_receiver.connections >= 1, "the exporter never tried"
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=20)
    # It stopped by itself (not killed) within the fleet's stop timeout, and said once why
    # its spans were dropped.
    assert code == 0, log_path.read_text()
    text = log_path.read_text()
    assert text.count("traces: cannot send to") == 1, text
    assert "Traceback" not in text, text
