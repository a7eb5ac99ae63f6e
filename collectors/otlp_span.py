"""What the OTLP decoders share: their results, the bounds on a span, and the span record.

Pure functions; the protobuf decoder (collectors/otlp.py) and the JSON one (collectors/otlp_json.py)
read their format into plain values and hand them to `build_record`, which validates and bounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

from collectors.spans import SpanRecord

# Bounds on what one span may bring (the columns' sizes and a sane row size).
MAX_NAME_CHARS = 255  # spans.name, service and instance are VARCHAR(255)
MAX_STATUS_MESSAGE_CHARS = 1024
MAX_ATTRIBUTES = 128  # span attributes first, then resource attributes
MAX_VALUE_CHARS = 1024  # a string value, or the JSON of an array or kvlist value
MAX_ARRAY_ITEMS = 64
MAX_EVENTS = 16  # the first events are kept with their attributes; all are counted
MAX_EVENT_ATTRIBUTES = 16
MAX_TIME_NS = 2**63 - 1  # spans.start_ns and duration_ns are signed 64-bit
MAX_COUNT = 2**31 - 1  # events_count and links_count are 32-bit
MAX_REJECTION_REASONS = 5  # error_message names the first few reasons, then counts the rest

UNKNOWN_SERVICE = "unknown_service"  # OTel resource semantic conventions: service.name default
RESOURCE_PREFIX = "resource."


class MalformedExport(ValueError):
    """The body is not an ExportTraceServiceRequest; the message says where it went wrong."""


@dataclass(frozen=True)
class Rejection:
    """A span the receiver refused, and why (ids as sent, for the error message)."""

    trace_id: str
    span_id: str
    reason: str


@dataclass(frozen=True)
class DecodedExport:
    """The spans of one export that can be stored, and the ones refused."""

    spans: tuple[SpanRecord, ...]
    rejections: tuple[Rejection, ...]

    def error_message(self) -> str:
        """Summarise the rejections for OTLP's partial_success.error_message."""
        reasons = [f"span {r.span_id or '?'}: {r.reason}" for r in self.rejections]
        head = "; ".join(reasons[:MAX_REJECTION_REASONS])
        more = len(reasons) - MAX_REJECTION_REASONS
        return f"{head}; and {more} more" if more > 0 else head


class SpanRejected(Exception):
    """One span cannot be stored; the message says why (caught per span)."""


def finite_number(number: float):
    # JSON (and PostgreSQL's jsonb) has no NaN or infinity: keep them as the proto3 JSON words.
    if math.isfinite(number):
        return number
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


class Resource:
    """What a resource gives each of its spans: service, instance and prefixed attributes."""

    __slots__ = ("service", "instance", "attributes", "truncated")

    def __init__(self, service: str, instance: str, attributes: dict, truncated: bool) -> None:
        self.service, self.instance = service, instance
        self.attributes, self.truncated = attributes, truncated

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, object]]) -> Resource:
        pairs = list(pairs)
        values = dict(pairs)
        service, cut_service = _clip(_as_text(values.get("service.name")), MAX_NAME_CHARS)
        instance, cut_instance = _clip(_as_text(values.get("service.instance.id")), MAX_NAME_CHARS)
        attributes, cut = bounded_attributes(
            ((RESOURCE_PREFIX + k, v) for k, v in pairs), MAX_ATTRIBUTES
        )
        return cls(
            service or UNKNOWN_SERVICE, instance, attributes, cut_service or cut_instance or cut
        )


def _as_text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def clean_text(text: str) -> str:
    """Replace U+0000, which PostgreSQL's text and jsonb cannot hold, with U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _clip(text: str, limit: int) -> tuple[str, bool]:
    text = clean_text(text)
    return (text, False) if len(text) <= limit else (text[:limit], True)


def bounded_attributes(pairs: Iterable[tuple[str, object]], limit: int) -> tuple[dict, bool]:
    """Keep the first `limit` attributes, each value bounded; say whether anything was cut."""
    result: dict = {}
    cut = False
    for key, value in pairs:
        if len(result) >= limit:
            return result, True
        key = clean_text(key)
        if len(key) > MAX_NAME_CHARS:
            key, cut = key[:MAX_NAME_CHARS], True
        value, cut_value = bounded_value(value)
        result[key] = value
        cut = cut or cut_value
    return result, cut


def bounded_value(value) -> tuple[object, bool]:
    """Bound one plain attribute value; say whether it was cut."""
    if isinstance(value, str):
        return _clip(value, MAX_VALUE_CHARS)
    if isinstance(value, (list, dict)):
        cut = False
        if isinstance(value, list) and len(value) > MAX_ARRAY_ITEMS:
            value, cut = value[:MAX_ARRAY_ITEMS], True
        encoded = json.dumps(value, separators=(",", ":"))
        if "\\u0000" in encoded:
            encoded = encoded.replace("\\u0000", "\\ufffd")
            value = json.loads(encoded)
        if len(encoded) > MAX_VALUE_CHARS:
            # Too big to keep whole: keep the start of its JSON text, marked as cut.
            return encoded[:MAX_VALUE_CHARS], True
        return value, cut
    return value, False


def bounded_event(name: str, time_ns: int, attributes: dict) -> tuple[dict, bool]:
    """One kept event (attributes already bounded); say whether its name was cut."""
    name, cut = _clip(name, MAX_NAME_CHARS)
    return {"name": name, "time_ns": time_ns, "attributes": attributes}, cut


def build_record(
    trace_id: str,
    span_id: str,
    parent_id: str,
    resource: Resource,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    status_code: int,
    status_message: str,
    attributes: dict,
    events: list[dict],
    events_count: int,
    links_count: int,
    truncated: bool,
) -> SpanRecord:
    """Validate one span and bound what is left; `truncated` says what the caller cut already.

    `attributes` are the span's own, bounded; the resource's are added after them.
    """
    if not name:
        raise SpanRejected("name is missing")
    if not start_ns:
        raise SpanRejected("startTimeUnixNano is missing")
    if end_ns < start_ns:
        raise SpanRejected("endTimeUnixNano is before startTimeUnixNano")
    if end_ns > MAX_TIME_NS:
        raise SpanRejected("endTimeUnixNano is past 2262 (more than a signed 64-bit count of ns)")
    name, status_message = clean_text(name), clean_text(status_message)
    if len(name) > MAX_NAME_CHARS:
        name, truncated = name[:MAX_NAME_CHARS], True
    if len(status_message) > MAX_STATUS_MESSAGE_CHARS:
        status_message, truncated = status_message[:MAX_STATUS_MESSAGE_CHARS], True
    extra = resource.attributes
    room = MAX_ATTRIBUTES - len(attributes)
    if len(extra) <= room:
        attributes.update(extra)
    else:
        truncated = True
        for key in list(extra)[: max(room, 0)]:
            attributes[key] = extra[key]
    return SpanRecord(
        trace_id,
        span_id,
        parent_id,
        resource.service,
        name,
        start_ns,
        end_ns - start_ns,
        kind if 0 <= kind <= 5 else 0,
        status_code if 0 <= status_code <= 2 else 0,
        status_message,
        resource.instance,
        attributes,
        truncated or resource.truncated or events_count > len(events),
        tuple(events),
        min(events_count, MAX_COUNT),
        min(links_count, MAX_COUNT),
    )
