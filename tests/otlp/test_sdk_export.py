"""The real OpenTelemetry SDK exports a three-service call chain into the running app."""

from __future__ import annotations

import urllib.request

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.otlp.conftest import stored_spans, stored_traces

PROPAGATOR = TraceContextTextMapPropagator()


def provider(service: str, endpoint: str, **exporter_options) -> TracerProvider:
    resource = Resource.create({"service.name": service, "service.instance.id": f"{service}-1"})
    tracer_provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=10, **exporter_options)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    return tracer_provider


def call_chain(gateway: TracerProvider, orders: TracerProvider, payments: TracerProvider):
    """gateway → orders → payments, context carried in HTTP headers as services do."""
    tracer = gateway.get_tracer("gateway")
    with (
        tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER),
        tracer.start_as_current_span("call orders", kind=SpanKind.CLIENT),
    ):
        headers: dict[str, str] = {}
        PROPAGATOR.inject(headers)
    context = PROPAGATOR.extract(headers)
    tracer = orders.get_tracer("orders")
    with (
        tracer.start_as_current_span("POST /orders", context=context, kind=SpanKind.SERVER),
        tracer.start_as_current_span("call payments", kind=SpanKind.CLIENT),
    ):
        headers = {}
        PROPAGATOR.inject(headers)
    context = PROPAGATOR.extract(headers)
    tracer = payments.get_tracer("payments")
    with tracer.start_as_current_span(
        "POST /charge", context=context, kind=SpanKind.SERVER, attributes={"amount": 12.5}
    ) as span:
        span.add_event("card declined", {"retry": False})
        span.set_status(Status(StatusCode.ERROR, "declined"))


def test_three_services_export_one_trace_with_its_parents_across_services(live_server, qd):
    endpoint = f"{live_server.url}/v1/traces"
    providers = [provider(s, endpoint) for s in ("gateway", "orders", "payments")]
    call_chain(*providers)
    for tracer_provider in providers:
        assert tracer_provider.force_flush(10_000)
        tracer_provider.shutdown()

    spans = {s.name: s for s in stored_spans(qd)}
    assert set(spans) == {
        "GET /checkout", "call orders", "POST /orders", "call payments", "POST /charge",
    }  # fmt: skip
    assert len({s.trace_id for s in spans.values()}) == 1
    assert spans["GET /checkout"].parent_span_id == ""
    assert spans["POST /orders"].parent_span_id == spans["call orders"].span_id
    assert spans["POST /charge"].parent_span_id == spans["call payments"].span_id
    assert spans["POST /orders"].service == "orders"
    assert spans["POST /charge"].service == "payments"
    assert spans["POST /charge"].instance == "payments-1"
    assert spans["POST /charge"].kind == 2 and spans["call payments"].kind == 3
    assert spans["POST /charge"].status_code == 2
    assert spans["POST /charge"].status_message == "declined"
    assert spans["POST /charge"].attributes["amount"] == 12.5
    assert spans["POST /charge"].attributes["resource.service.name"] == "payments"
    assert spans["POST /charge"].events_count == 1
    assert spans["POST /charge"].events[0]["name"] == "card declined"
    assert spans["POST /charge"].events[0]["attributes"] == {"retry": False}

    (trace,) = stored_traces(qd)
    assert (trace.root_service, trace.root_operation) == ("gateway", "GET /checkout")
    assert trace.span_count == 5 and trace.error_count == 1


def finished_spans(service: str, count: int):
    """Spans as the SDK hands them to an exporter."""
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tracer_provider.get_tracer("t")
    for i in range(count):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    return memory.get_finished_spans()


def test_a_resent_export_stores_nothing_twice(live_server, qd):
    spans = finished_spans("orders", 3)
    exporter = OTLPSpanExporter(endpoint=f"{live_server.url}/v1/traces", timeout=10)
    assert exporter.export(spans).name == "SUCCESS"
    assert exporter.export(spans).name == "SUCCESS"  # the sender lost the first answer
    assert len(stored_spans(qd)) == 3
    assert sum(t.span_count for t in stored_traces(qd)) == 3
    metrics = _metrics(live_server)
    assert 'quarterdeck_ingest_spans_total{outcome="accepted"} 3.0' in metrics
    assert 'quarterdeck_ingest_spans_total{outcome="duplicate"} 3.0' in metrics
    assert 'quarterdeck_ingest_requests_total{status="200"} 2.0' in metrics


def test_the_ingest_token_is_refused_when_wrong_and_taken_when_right(live_server, qd, monkeypatch):
    monkeypatch.setenv("QUARTERDECK_OTLP_TOKEN", "s3cret-ingest")
    spans = finished_spans("orders", 2)
    endpoint = f"{live_server.url}/v1/traces"
    without = OTLPSpanExporter(endpoint=endpoint, timeout=10)
    wrong = OTLPSpanExporter(endpoint=endpoint, timeout=10, headers={"Authorization": "Bearer no"})
    right = OTLPSpanExporter(
        endpoint=endpoint, timeout=10, headers={"Authorization": "Bearer s3cret-ingest"}
    )
    assert without.export(spans).name == "FAILURE"
    assert wrong.export(spans).name == "FAILURE"
    assert stored_spans(qd) == []
    assert right.export(spans).name == "SUCCESS"
    assert len(stored_spans(qd)) == 2
    assert 'quarterdeck_ingest_requests_total{status="401"} 2.0' in _metrics(live_server)


def _metrics(live_server) -> str:
    with urllib.request.urlopen(f"{live_server.url}/metrics", timeout=10) as response:
        return response.read().decode()
