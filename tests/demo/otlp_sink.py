"""A test-only OTLP/HTTP trace receiver: decodes what the fleet's exporters send, keeps the spans.

It stands in for Quarterdeck's `POST /v1/traces` in the demo's own tests: protobuf only (what
`opentelemetry-exporter-otlp-proto-http` sends), decoded with opentelemetry-proto, optionally
behind a bearer token. `hang` makes it accept connections and never answer (a receiver that is
down in the worst way).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS = {0: "unset", 1: "ok", 2: "error"}


@dataclass
class ReceivedSpan:
    """One span as the sink decoded it (ids in lower-case hex, as OTLP JSON writes them)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: dict
    resource: dict
    events: list[str] = field(default_factory=list)

    @property
    def service(self) -> str:
        """Return the span's service.name (from its resource)."""
        return self.resource.get("service.name", "")

    @property
    def duration_s(self) -> float:
        """Return how long the span took, in seconds."""
        return (self.end_ns - self.start_ns) / 1e9


def _value(value: AnyValue):
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def decode(body: bytes) -> list[ReceivedSpan]:
    """Decode an ExportTraceServiceRequest into spans."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=KINDS.get(span.kind, str(span.kind)),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status=STATUS.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        resource=resource,
                        events=[event.name for event in span.events],
                    )
                )
    return spans


class OtlpSink:
    """POST /v1/traces on a free loopback port; the spans it received, and who sent them."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.hang = threading.Event()
        self.spans: list[ReceivedSpan] = []
        self.refused = 0  # exports without the right token
        self.connections = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,))

    @property
    def url(self) -> str:
        """Return the traces endpoint."""
        return f"http://127.0.0.1:{self._server.server_port}/v1/traces"

    def start(self) -> OtlpSink:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.hang.clear()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def received(self) -> list[ReceivedSpan]:
        """Return a copy of every span received so far."""
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """Return the spans of one trace."""
        return [s for s in self.received() if s.trace_id == trace_id]

    def _take(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.spans.extend(spans)


def _handler(sink: OtlpSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            with sink._lock:
                sink.connections += 1
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if sink.hang.is_set():
                while sink.hang.is_set():
                    time.sleep(0.1)
                self.close_connection = True
                return
            if self.path != "/v1/traces":
                self._answer(404, b"")
                return
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self._answer(415, b"")
                return
            if sink.token and self.headers.get("Authorization") != f"Bearer {sink.token}":
                with sink._lock:
                    sink.refused += 1
                self._answer(401, b"")
                return
            sink._take(decode(body))
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
