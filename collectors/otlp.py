"""Decode an OTLP trace export (protobuf or OTLP JSON) into span records and rejections.

Pure functions: bytes in, `DecodedExport` out. A body that is not an export at all raises
`MalformedExport` (the receiver answers 400); a span that cannot be stored (bad ids, no name,
end before start, a field of the wrong type) is rejected on its own with a reason, and the
rest of the export is kept (OTLP's partial success).
"""

from __future__ import annotations

import base64

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collectors.otlp_json import decode_json
from collectors.otlp_span import (
    MAX_ARRAY_ITEMS,
    MAX_ATTRIBUTES,
    MAX_EVENT_ATTRIBUTES,
    MAX_EVENTS,
    MAX_NAME_CHARS,
    MAX_VALUE_CHARS,
    DecodedExport,
    MalformedExport,
    Rejection,
    Resource,
    SpanRejected,
    bounded_event,
    bounded_value,
    build_record,
    clean_text,
    finite_number,
)
from collectors.spans import SpanRecord

ZERO_SPAN_ID = bytes(8)
__all__ = ["DecodedExport", "MalformedExport", "Rejection", "decode_json", "decode_protobuf"]


def decode_protobuf(body: bytes) -> DecodedExport:
    """Decode a binary protobuf ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedExport(f"not a protobuf ExportTraceServiceRequest: {exc}") from exc
    spans: list[SpanRecord] = []
    rejections: list[Rejection] = []
    for resource_spans in request.resource_spans:
        resource = Resource.from_pairs(
            (kv.key, _proto_value(kv.value)) for kv in resource_spans.resource.attributes
        )
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    spans.append(_proto_span(span, resource))
                except SpanRejected as exc:
                    rejections.append(Rejection(span.trace_id.hex(), span.span_id.hex(), str(exc)))
    return DecodedExport(tuple(spans), tuple(rejections))


def _proto_span(span, resource: Resource) -> SpanRecord:
    trace_id = _proto_id(span.trace_id, 16, "traceId")
    span_id = _proto_id(span.span_id, 8, "spanId")
    parent = span.parent_span_id
    parent_id = "" if not parent or parent == ZERO_SPAN_ID else _proto_id(parent, 8, "parentSpanId")
    attributes, truncated = _proto_attributes(span.attributes, MAX_ATTRIBUTES)
    events = []
    if span.events:
        for e in span.events[:MAX_EVENTS]:
            event_attributes, cut = _proto_attributes(e.attributes, MAX_EVENT_ATTRIBUTES)
            event, cut_name = bounded_event(e.name, e.time_unix_nano, event_attributes)
            events.append(event)
            truncated = truncated or cut or cut_name
    status = span.status
    return build_record(
        trace_id,
        span_id,
        parent_id,
        resource,
        span.name,
        span.kind,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        status.code,
        status.message,
        attributes,
        events,
        len(span.events) + span.dropped_events_count,
        len(span.links) + span.dropped_links_count,
        truncated,
    )


def _proto_id(raw: bytes, size: int, field: str) -> str:
    if len(raw) != size:
        raise SpanRejected(f"{field} must be {size} bytes, not {len(raw)}")
    if not any(raw):
        raise SpanRejected(f"{field} is all zeros (an invalid id)")
    return raw.hex()


def _proto_attributes(attributes, limit: int) -> tuple[dict, bool]:
    """Bound a KeyValue list into a dict; say whether anything was cut.

    The hot path of ingest: plain string, int and bool values are read inline.
    """
    result: dict = {}
    cut = False
    for kv in attributes:
        if len(result) >= limit:
            return result, True
        key, value = kv.key, kv.value
        which = value.WhichOneof("value")
        if which == "string_value":
            plain = value.string_value
            if "\x00" in plain:
                plain = clean_text(plain)
            if len(plain) > MAX_VALUE_CHARS:
                plain, cut = plain[:MAX_VALUE_CHARS], True
        elif which == "int_value":
            plain = value.int_value
        elif which == "bool_value":
            plain = value.bool_value
        else:
            plain, cut_value = bounded_value(_proto_value(value))
            cut = cut or cut_value
        if len(key) > MAX_NAME_CHARS or "\x00" in key:
            key = clean_text(key)[:MAX_NAME_CHARS]
            cut = cut or len(kv.key) > MAX_NAME_CHARS
        result[key] = plain
    return result, cut


def _proto_value(value):
    """Turn an AnyValue into a plain JSON value (before bounding)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return finite_number(value.double_value)
    if which == "array_value":
        return [_proto_value(v) for v in value.array_value.values[: MAX_ARRAY_ITEMS + 1]]
    if which == "kvlist_value":
        return {kv.key: _proto_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None
