"""Decode OTLP JSON: the protobuf JSON mapping with OTLP's own rules (SOURCES.md, OTLP/HTTP).

Ids are hex (not base64, so not `json_format.Parse`), enums are integers, int64 are decimal
strings or numbers, keys are lowerCamelCase (snake_case read too, as proto3 JSON parsers do),
unknown fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json

from collectors.otlp_span import (
    MAX_ARRAY_ITEMS,
    MAX_ATTRIBUTES,
    MAX_EVENT_ATTRIBUTES,
    MAX_EVENTS,
    DecodedExport,
    MalformedExport,
    Rejection,
    Resource,
    SpanRejected,
    bounded_attributes,
    bounded_event,
    build_record,
    finite_number,
)
from collectors.spans import SpanRecord

# OTLP enum names, accepted in JSON besides the integers the OTLP JSON mapping prescribes.
KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_HEX = frozenset("0123456789abcdef")
# Arrays and kvlists inside attribute values, as deep as anyone sends them (protobuf's own
# parser stops at 100 levels of messages).
MAX_VALUE_DEPTH = 16
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1


def decode_json(body: bytes) -> DecodedExport:
    """Decode an OTLP JSON ExportTraceServiceRequest (ids in hex, int64 as strings or numbers).

    Not `json_format.Parse`: it would read the hex ids as base64, as protobuf's JSON does.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedExport(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise MalformedExport("not JSON this decoder reads: nested too deeply") from exc
    if not isinstance(document, dict):
        raise MalformedExport("the body must be a JSON object (an ExportTraceServiceRequest)")
    spans: list[SpanRecord] = []
    rejections: list[Rejection] = []
    for i, resource_spans in enumerate(_list(document, ("resourceSpans", "resource_spans"))):
        where = f"resourceSpans[{i}]"
        _object(resource_spans, where)
        resource_obj = _field(resource_spans, "resource") or {}
        _object(resource_obj, f"{where}.resource")
        try:
            pairs = _json_attributes(resource_obj)
        except SpanRejected as exc:
            raise MalformedExport(f"{where}.resource: {exc}") from exc
        resource = Resource.from_pairs(pairs)
        for j, scope_spans in enumerate(_list(resource_spans, ("scopeSpans", "scope_spans"))):
            _object(scope_spans, f"{where}.scopeSpans[{j}]")
            for k, span in enumerate(_list(scope_spans, ("spans",))):
                if not isinstance(span, dict):
                    raise MalformedExport(f"{where}.scopeSpans[{j}].spans[{k}] must be an object")
                try:
                    spans.append(_json_span(span, resource))
                except SpanRejected as exc:
                    rejections.append(
                        Rejection(
                            _text(_field(span, "traceId")), _text(_field(span, "spanId")), str(exc)
                        )
                    )
    return DecodedExport(tuple(spans), tuple(rejections))


def _field(obj: dict, camel: str):
    """Read a field by its lowerCamelCase name or its snake_case one (proto3 JSON takes both)."""
    value = obj.get(camel)
    if value is None:
        snake = _SNAKE.get(camel)
        if snake is not None:
            value = obj.get(snake)
    return value


_SNAKE = {
    "traceId": "trace_id",
    "spanId": "span_id",
    "parentSpanId": "parent_span_id",
    "startTimeUnixNano": "start_time_unix_nano",
    "endTimeUnixNano": "end_time_unix_nano",
    "timeUnixNano": "time_unix_nano",
    "droppedEventsCount": "dropped_events_count",
    "droppedLinksCount": "dropped_links_count",
    "stringValue": "string_value",
    "boolValue": "bool_value",
    "intValue": "int_value",
    "doubleValue": "double_value",
    "arrayValue": "array_value",
    "kvlistValue": "kvlist_value",
    "bytesValue": "bytes_value",
}


def _list(obj: dict, names: tuple[str, ...]) -> list:
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise MalformedExport(f"{name} must be a list, not {_json_type(value)}")
        return value
    return []


def _object(value, where: str) -> None:
    if not isinstance(value, dict):
        raise MalformedExport(f"{where} must be an object, not {_json_type(value)}")


def _json_span(span: dict, resource: Resource) -> SpanRecord:
    trace_id = _json_id(_field(span, "traceId"), 32, "traceId")
    span_id = _json_id(_field(span, "spanId"), 16, "spanId")
    parent = _field(span, "parentSpanId")
    parent_id = "" if parent in (None, "") else _json_id(parent, 16, "parentSpanId")
    if parent_id == "0" * 16:
        parent_id = ""
    name = _field(span, "name")
    if name is not None and not isinstance(name, str):
        raise SpanRejected(f"name must be a string, not {_json_type(name)}")
    status = _field(span, "status") or {}
    if not isinstance(status, dict):
        raise SpanRejected(f"status must be an object, not {_json_type(status)}")
    message = status.get("message") or ""
    if not isinstance(message, str):
        raise SpanRejected("status.message must be a string")
    attributes, truncated = bounded_attributes(_json_attributes(span), MAX_ATTRIBUTES)
    events_raw = _json_array(span, "events")
    events = []
    for event in events_raw[:MAX_EVENTS]:
        if not isinstance(event, dict):
            raise SpanRejected("events[] must be objects")
        event_name = _field(event, "name") or ""
        if not isinstance(event_name, str):
            raise SpanRejected("events[].name must be a string")
        time_ns = _uint64(_field(event, "timeUnixNano"), "events[].timeUnixNano")
        event_attributes, cut = bounded_attributes(_json_attributes(event), MAX_EVENT_ATTRIBUTES)
        kept, cut_name = bounded_event(event_name, time_ns, event_attributes)
        events.append(kept)
        truncated = truncated or cut or cut_name
    return build_record(
        trace_id,
        span_id,
        parent_id,
        resource,
        name or "",
        _enum(_field(span, "kind"), KIND_NAMES, "kind"),
        _uint64(_field(span, "startTimeUnixNano"), "startTimeUnixNano"),
        _uint64(_field(span, "endTimeUnixNano"), "endTimeUnixNano"),
        _enum(status.get("code"), STATUS_NAMES, "status.code"),
        message,
        attributes,
        events,
        len(events_raw) + _uint64(_field(span, "droppedEventsCount"), "droppedEventsCount"),
        len(_json_array(span, "links"))
        + _uint64(_field(span, "droppedLinksCount"), "droppedLinksCount"),
        truncated,
    )


def _json_id(value, digits: int, field: str) -> str:
    if value is None or value == "":
        raise SpanRejected(f"{field} is missing")
    if not isinstance(value, str):
        raise SpanRejected(f"{field} must be a hex string, not {_json_type(value)}")
    lowered = value.lower()
    if len(lowered) != digits or not _HEX.issuperset(lowered):
        raise SpanRejected(
            f"{field} must be {digits} hex digits (OTLP JSON ids are hex, not base64)"
        )
    if field != "parentSpanId" and lowered == "0" * digits:
        raise SpanRejected(f"{field} is all zeros (an invalid id)")
    return lowered


def _uint64(value, field: str) -> int:
    """Read an OTLP JSON (u)int64: a decimal string or a JSON integer; absent is 0."""
    if value is None:
        return 0
    if (
        isinstance(value, str)
        and _is_digits(value)
        or isinstance(value, float)
        and value.is_integer()
    ):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX:
        return value
    raise SpanRejected(
        f"{field} must be a non-negative integer or decimal string, not {value!r:.40}"
    )


def _is_digits(text: str) -> bool:
    # str.isdigit() also takes "²"; more than 20 digits is past any 64-bit integer.
    return text.isascii() and text.isdigit() and len(text) <= 20


def _enum(value, names: dict[str, int], field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value in names.values():
        return value
    if isinstance(value, str) and value in names:
        return names[value]
    raise SpanRejected(f"{field} must be one of {sorted(names.values())}, not {value!r:.40}")


def _json_array(obj: dict, name: str) -> list:
    value = obj.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpanRejected(f"{name} must be a list, not {_json_type(value)}")
    return value


def _json_attributes(obj: dict) -> list[tuple[str, object]]:
    pairs = []
    for kv in _json_array(obj, "attributes"):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise SpanRejected("attributes[] must be objects with a string key")
        pairs.append((kv["key"], _json_value(kv.get("value"), kv["key"])))
    return pairs


def _json_value(value, key: str, depth: int = 0):
    """Turn an OTLP JSON AnyValue into a plain JSON value (before bounding)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpanRejected(f"attribute {key!r:.60}: a value must be an AnyValue object")
    if depth > MAX_VALUE_DEPTH:
        raise SpanRejected(f"attribute {key!r:.60}: nested deeper than {MAX_VALUE_DEPTH} levels")
    for name, raw in value.items():
        kind = _VALUE_KINDS.get(name)
        if kind is None or raw is None:
            continue  # unknown fields are ignored
        if kind == "string":
            if not isinstance(raw, str):
                raise SpanRejected(f"attribute {key!r:.60}: stringValue must be a string")
            return raw
        if kind == "bool":
            if not isinstance(raw, bool):
                raise SpanRejected(f"attribute {key!r:.60}: boolValue must be true or false")
            return raw
        if kind == "int":
            if (
                isinstance(raw, str)
                and raw.lstrip("-").isdigit()
                and raw.isascii()
                and len(raw) <= 20
            ):
                raw = int(raw)
            if isinstance(raw, int) and not isinstance(raw, bool) and INT64_MIN <= raw <= INT64_MAX:
                return raw
            raise SpanRejected(f"attribute {key!r:.60}: intValue must be a 64-bit integer")
        if kind == "double":
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return finite_number(float(raw))
            if raw in ("NaN", "Infinity", "-Infinity"):
                return raw
            raise SpanRejected(f"attribute {key!r:.60}: doubleValue must be a number")
        if kind == "bytes":
            if not isinstance(raw, str):
                raise SpanRejected(f"attribute {key!r:.60}: bytesValue must be base64 text")
            try:
                base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise SpanRejected(f"attribute {key!r:.60}: bytesValue is not base64") from exc
            return raw
        items = raw.get("values") if isinstance(raw, dict) else None
        if items is None:
            items = []
        if not isinstance(items, list):
            raise SpanRejected(f"attribute {key!r:.60}: {name}.values must be a list")
        if kind == "array":
            return [_json_value(v, key, depth + 1) for v in items[: MAX_ARRAY_ITEMS + 1]]
        result = {}
        for kv in items:
            if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
                raise SpanRejected(f"attribute {key!r:.60}: kvlistValue entries need a string key")
            result[kv["key"]] = _json_value(kv.get("value"), key, depth + 1)
        return result
    return None


_VALUE_KINDS = {
    "stringValue": "string",
    "string_value": "string",
    "boolValue": "bool",
    "bool_value": "bool",
    "intValue": "int",
    "int_value": "int",
    "doubleValue": "double",
    "double_value": "double",
    "bytesValue": "bytes",
    "bytes_value": "bytes",
    "arrayValue": "array",
    "array_value": "array",
    "kvlistValue": "kvlist",
    "kvlist_value": "kvlist",
}


def _text(value) -> str:
    return value[:64] if isinstance(value, str) else ""


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )
