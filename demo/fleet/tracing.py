"""How a fleet process sends its traces: the OpenTelemetry SDK, OTLP/HTTP, W3C trace context.

Each process has one `FleetTracing`: a tracer provider whose resource names the service, the
instance and its version, and a `BatchSpanProcessor` in front of the OTLP/HTTP exporter. The
request threads only queue finished spans; a background thread sends them. When the receiver is
down the exporter gives up after a short timeout and the queue drops what does not fit, so the
fleet never waits for its traces. The ingest token, when there is one, comes the standard way:
`OTEL_EXPORTER_OTLP_TRACES_HEADERS=Authorization=Bearer%20<token>` in the environment.

`server_span` and `client_span` make the spans of requests received and calls made, with the
attributes of the OpenTelemetry HTTP semantic conventions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence

import requests
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.semconv.attributes import (
    error_attributes,
    http_attributes,
    network_attributes,
    server_attributes,
    service_attributes,
    url_attributes,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

EXPORT_TIMEOUT_S = 2.0  # one export (retries included) gives up after this
SCHEDULE_DELAY_MS = 2000  # spans reach Quarterdeck within about 2 s of ending (fewer exports)
MAX_QUEUE_SIZE = 2048  # past this, new spans are dropped while the receiver is away
MAX_BATCH_SIZE = 512
FLUSH_ON_STOP_MS = 1500
# The SDK logs every failed export and every dropped span; we say it once per outage instead.
_SDK_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
)
_EXPORTER_LOGGERS = "opentelemetry.exporter."


class _SdkComplaints(logging.Filter):
    """Keep the SDK's last complaint (e.g. the status code refused) instead of logging each."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def filter(self, record: logging.LogRecord) -> bool:
        # The queue's own complaint ("Queue full") comes from request threads: not a reason.
        if record.levelno >= logging.WARNING and record.name.startswith(_EXPORTER_LOGGERS):
            self.last = record.getMessage()
        return False


_COMPLAINTS = _SdkComplaints()


class OutageAwareExporter(SpanExporter):
    """An exporter that logs once when its receiver stops answering and once when it is back."""

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.dropped = 0
        self._failing = False
        self._closed = False
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send the spans; count and drop them when they cannot be sent."""
        if self._closed:
            self.dropped += len(spans)
            return SpanExportResult.FAILURE
        _COMPLAINTS.last = ""
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            if self._failing:
                log.info(
                    "traces: %s answers again (%d spans dropped so far)",
                    self.endpoint,
                    self.dropped,
                )
            self._failing = False
        else:
            self.dropped += len(spans)
            if not self._failing:
                log.warning(
                    "traces: cannot send to %s (%s); dropping spans until it answers",
                    self.endpoint,
                    _COMPLAINTS.last or "no reason given",
                )
            self._failing = True
        return result

    def shutdown(self) -> None:
        """Stop sending, and abort an export that is waiting to retry."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here."""
        return True


class FleetTracing:
    """One process's tracer, and the pipeline that sends its spans (or no pipeline at all)."""

    def __init__(
        self,
        service: str,
        instance_id: str,
        version: str,
        endpoint: str | None,
        *,
        exporter: SpanExporter | None = None,
    ) -> None:
        resource = Resource.create(
            {
                service_attributes.SERVICE_NAME: service,
                service_attributes.SERVICE_INSTANCE_ID: instance_id,
                service_attributes.SERVICE_VERSION: version,
            }
        )
        self.provider = TracerProvider(resource=resource)
        self.exporter: SpanExporter | None = None
        self.processor: BatchSpanProcessor | None = None
        if exporter is None and endpoint:
            for name in _SDK_LOGGERS:
                logging.getLogger(name).addFilter(_COMPLAINTS)
            exporter = OutageAwareExporter(
                OTLPSpanExporter(
                    endpoint=endpoint, timeout=EXPORT_TIMEOUT_S, session=_direct_session()
                ),
                endpoint,
            )
        if exporter is not None:
            self.exporter = exporter
            self.processor = BatchSpanProcessor(
                exporter,
                max_queue_size=MAX_QUEUE_SIZE,
                schedule_delay_millis=SCHEDULE_DELAY_MS,
                max_export_batch_size=MAX_BATCH_SIZE,
                export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
            )
            self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("demo.fleet")

    @property
    def enabled(self) -> bool:
        """Tell whether spans are sent anywhere."""
        return self.processor is not None

    def stop(self) -> None:
        """Send what is queued (briefly), then stop: a receiver that is down never holds us."""
        if self.processor is not None:
            self.processor.force_flush(FLUSH_ON_STOP_MS)
            self.processor.span_exporter.shutdown()
        self.provider.shutdown()


def _direct_session() -> requests.Session:
    # The receiver is named by the fleet's config: never through a proxy from the environment.
    session = requests.Session()
    session.trust_env = False
    return session


def start_server_span(
    tracer: trace.Tracer,
    method: str,
    route: str,
    path: str,
    headers: Mapping[str, str],
    port: int,
    address: str,
) -> trace.Span:
    """Start the SERVER span of a request received, a child of the caller's span if it sent one.

    The caller records the answer with `answer_span`, then ends the span.
    """
    parent = propagate.extract(headers)
    # Semantic conventions: "{method} {http.route}", or only the method when no route matched.
    name = f"{method} {route}" if route else method
    attributes = {
        http_attributes.HTTP_REQUEST_METHOD: method,
        url_attributes.URL_PATH: path,
        url_attributes.URL_SCHEME: "http",
        server_attributes.SERVER_ADDRESS: address,
        server_attributes.SERVER_PORT: port,
        network_attributes.NETWORK_PROTOCOL_VERSION: "1.1",
    }
    if route:
        attributes[http_attributes.HTTP_ROUTE] = route
    return tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)


@contextlib.contextmanager
def server_span(
    tracer: trace.Tracer,
    method: str,
    route: str,
    path: str,
    headers: Mapping[str, str],
    port: int,
    address: str,
) -> Iterator[trace.Span]:
    """`start_server_span` as the current span (calls made inside are its children)."""
    span = start_server_span(tracer, method, route, path, headers, port, address)
    with trace.use_span(span, end_on_exit=True):
        yield span


def answer_span(span: trace.Span, status: int) -> None:
    """Record a server response: its status code, and ERROR for a 5xx (4xx is the caller's)."""
    span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, status)
    if status >= 500:
        span.set_attribute(error_attributes.ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))


@contextlib.contextmanager
def client_span(
    tracer: trace.Tracer,
    method: str,
    address: str,
    port: int,
    path: str,
    headers: MutableMapping[str, str],
    template: str | None = None,
) -> Iterator[trace.Span]:
    """The CLIENT span of a call made; the W3C `traceparent` goes into `headers`.

    `template` is the path's route template when the caller knows it (the fleet's calls are
    fixed routes): the span is then named `{method} {template}`, so a trace's root says what
    it does.
    """
    attributes = {
        http_attributes.HTTP_REQUEST_METHOD: method,
        server_attributes.SERVER_ADDRESS: address,
        server_attributes.SERVER_PORT: port,
        url_attributes.URL_FULL: f"http://{address}:{port}{path}",
        network_attributes.NETWORK_PROTOCOL_VERSION: "1.1",
    }
    # Semantic conventions: a client span is named `{method} {url.template}` when the template
    # is known, else by its method alone.
    if template:
        attributes["url.template"] = template  # not yet a stable semconv attribute
    with tracer.start_as_current_span(
        f"{method} {template}" if template else method,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        propagate.inject(headers)
        yield span


def called_span(span: trace.Span, status: int, error: BaseException | None = None) -> None:
    """Record a call's outcome: the status code, or the error when no answer came."""
    if error is not None:
        span.record_exception(error)
        span.set_attribute(error_attributes.ERROR_TYPE, type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, str(error)))
        return
    span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, status)
    # Semantic conventions: on the client side a 4xx is an error too.
    if status >= 400:
        span.set_attribute(error_attributes.ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))
