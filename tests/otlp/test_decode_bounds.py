"""The decoder bounds what a span may bring, marks what it cut, and tells bodies from spans."""

from __future__ import annotations

import json
import math

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collectors.otlp import MalformedExport, decode_json, decode_protobuf
from collectors.otlp_span import (
    MAX_ATTRIBUTES,
    MAX_EVENTS,
    MAX_NAME_CHARS,
    MAX_VALUE_CHARS,
)


def proto_request(service: str | None = "orders"):
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    if service is not None:
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", service
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id = bytes(range(1, 17)), bytes(range(1, 9))
    span.name, span.start_time_unix_nano, span.end_time_unix_nano = "GET /", 10**18, 10**18 + 7
    return request, span


def only_span(request):
    decoded = decode_protobuf(request.SerializeToString())
    assert decoded.rejections == ()
    (span,) = decoded.spans
    return span


def test_a_plain_span_is_not_marked_truncated():
    request, _ = proto_request()
    span = only_span(request)
    assert span.truncated is False
    assert span.trace_id == bytes(range(1, 17)).hex() and span.duration_ns == 7
    assert span.attributes == {"resource.service.name": "orders"}


def test_long_values_names_and_keys_are_cut_and_marked():
    request, span = proto_request()
    span.name = "n" * 1000
    kv = span.attributes.add()
    kv.key, kv.value.string_value = "k" * 1000, "v" * 5000
    stored = only_span(request)
    assert stored.truncated is True
    assert stored.name == "n" * MAX_NAME_CHARS
    assert stored.attributes["k" * MAX_NAME_CHARS] == "v" * MAX_VALUE_CHARS


def test_attributes_past_the_count_bound_are_dropped_and_marked():
    request, span = proto_request()
    for i in range(MAX_ATTRIBUTES + 10):
        kv = span.attributes.add()
        kv.key, kv.value.int_value = f"a{i}", i
    stored = only_span(request)
    assert stored.truncated is True
    assert len(stored.attributes) == MAX_ATTRIBUTES
    assert "resource.service.name" not in stored.attributes  # the span's own come first


def test_every_any_value_kind_flattens_to_json():
    request, span = proto_request()
    values = span.attributes
    for key in ("s", "b", "i", "d", "nan", "bytes", "array", "kv"):
        values.add().key = key
    values[0].value.string_value = "text"
    values[1].value.bool_value = True
    values[2].value.int_value = -(2**63)
    values[3].value.double_value = 1.5
    values[4].value.double_value = math.nan
    values[5].value.bytes_value = b"\x00\x01"
    values[6].value.array_value.values.add().int_value = 1
    values[6].value.array_value.values.add().string_value = "two"
    entry = values[7].value.kvlist_value.values.add()
    entry.key, entry.value.bool_value = "inner", False
    stored = only_span(request)
    assert {k: v for k, v in stored.attributes.items() if not k.startswith("resource.")} == {
        "s": "text", "b": True, "i": -(2**63), "d": 1.5, "nan": "NaN", "bytes": "AAE=",
        "array": [1, "two"], "kv": {"inner": False},
    }  # fmt: skip
    json.dumps(stored.attributes, allow_nan=False)  # storable as strict JSON (PostgreSQL jsonb)


def test_a_big_array_is_cut_to_its_bound_and_marked():
    request, span = proto_request()
    kv = span.attributes.add()
    kv.key = "ids"
    for i in range(100):
        kv.value.array_value.values.add().int_value = i
    stored = only_span(request)
    assert stored.attributes["ids"] == list(range(64)) and stored.truncated


def test_the_first_events_are_kept_and_all_are_counted():
    request, span = proto_request()
    for i in range(MAX_EVENTS + 4):
        event = span.events.add()
        event.name, event.time_unix_nano = f"e{i}", 10**18 + i
    span.dropped_events_count = 3
    span.links.add().trace_id = bytes(16)
    stored = only_span(request)
    assert [e["name"] for e in stored.events] == [f"e{i}" for i in range(MAX_EVENTS)]
    assert stored.events_count == MAX_EVENTS + 4 + 3
    assert stored.links_count == 1
    assert stored.truncated is True


def test_resource_service_and_instance_and_the_otel_default():
    request, _ = proto_request(service=None)
    kv = request.resource_spans[0].resource.attributes.add()
    kv.key, kv.value.string_value = "service.instance.id", "pod-7"
    stored = only_span(request)
    assert stored.service == "unknown_service" and stored.instance == "pod-7"
    assert stored.attributes == {"resource.service.instance.id": "pod-7"}


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("trace_id", b"\x01" * 8, "traceId must be 16 bytes, not 8"),
        ("span_id", bytes(8), "spanId is all zeros"),
        ("parent_span_id", b"\x01\x02", "parentSpanId must be 8 bytes"),
        ("name", "", "name is missing"),
        ("end_time_unix_nano", 5, "endTimeUnixNano is before startTimeUnixNano"),
    ],
)
def test_a_bad_protobuf_span_is_rejected_with_its_reason(field, value, reason):
    request, span = proto_request()
    setattr(span, field, value)
    decoded = decode_protobuf(request.SerializeToString())
    assert decoded.spans == ()
    (rejection,) = decoded.rejections
    assert reason in rejection.reason
    assert reason in decoded.error_message()


def test_an_all_zero_parent_is_a_root():
    request, span = proto_request()
    span.parent_span_id = bytes(8)
    assert only_span(request).parent_span_id == ""


def test_the_error_message_names_five_reasons_and_counts_the_rest():
    request, span = proto_request()
    spans = request.resource_spans[0].scope_spans[0].spans
    for _ in range(7):
        spans.add().CopyFrom(span)
    for s in spans:
        s.name = ""
    message = decode_protobuf(request.SerializeToString()).error_message()
    assert message.count("name is missing") == 5 and message.endswith("and 3 more")


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff", b'{"resourceSpans": 5}', b"null", b'{"resourceSpans": [3]}'],
)
def test_a_body_that_is_no_export_is_malformed(body):
    with pytest.raises(MalformedExport):
        decode_json(body) if body[:1] in b"{n" else decode_protobuf(body)


def test_an_empty_export_is_valid_and_empty():
    assert decode_protobuf(b"").spans == () and decode_json(b"{}").spans == ()


def test_json_nested_past_any_sane_depth_is_refused_not_a_crash():
    with pytest.raises(MalformedExport, match="nested too deeply"):
        decode_json(b"[" * 200_000 + b"]" * 200_000)
    value: dict = {"stringValue": "deep"}
    for _ in range(40):
        value = {"arrayValue": {"values": [value]}}
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "01" * 16,
                                "spanId": "02" * 8,
                                "name": "x",
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "attributes": [{"key": "deep", "value": value}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (rejection,) = decode_json(json.dumps(body).encode()).rejections
    assert "nested deeper than 16 levels" in rejection.reason


def test_protobuf_nul_characters_become_replacement_characters():
    request, span = proto_request(service="pay\x00ments")
    span.name = "op\x00"
    kv = span.attributes.add()
    kv.key, kv.value.string_value = "k\x00", "v\x00"
    stored = only_span(request)
    assert stored.service == "pay\ufffdments" and stored.name == "op\ufffd"
    assert stored.attributes["k\ufffd"] == "v\ufffd"
    assert "\x00" not in json.dumps(stored.attributes)
