"""What an OTLP trace export carries, once decoded: one record per span, ready to store.

The decoder (protobuf or OTLP JSON) fills these; the store writes them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpanRecord:
    """One span, with its resource's service and instance, bounded and validated."""

    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero
    parent_span_id: str  # "" for a root span
    service: str  # resource attribute service.name ("unknown_service" when absent, per OTel)
    name: str
    start_ns: int
    duration_ns: int  # end - start, never negative
    kind: int = 0  # OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    status_code: int = 0  # OTLP Status code: 0 unset, 1 ok, 2 error
    status_message: str = ""
    instance: str = ""  # resource attribute service.instance.id
    attributes: dict = field(default_factory=dict)
    truncated: bool = False
    events: tuple = ()  # ({"name", "time_ns", "attributes"}, ...)
    events_count: int = 0
    links_count: int = 0
