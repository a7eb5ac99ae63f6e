"""OTLP JSON as the specification maps it: hex ids, int64 as strings, enums as integers."""

from __future__ import annotations

import json

import pytest

from tests.otlp.conftest import post, stored_spans, stored_traces

TRACE = "5b8efff798038103d269b633813fc60c"
ROOT = "eee19b7ec3c1b174"
CHILD = "eee19b7ec3c1b173"
PORT = {"key": "port", "value": {"intValue": 5432}}


def export(*spans: dict, service: str | None = "checkout", extra_resource=()) -> dict:
    attributes = list(extra_resource)
    if service is not None:
        attributes.append({"key": "service.name", "value": {"stringValue": service}})
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes},
                "scopeSpans": [{"scope": {"name": "manual"}, "spans": list(spans)}],
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",  # unknown here: ignored
            }
        ]
    }


def span(span_id=CHILD, parent=ROOT, name="SELECT orders", **fields) -> dict:
    body = {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            {"key": "db.rows", "value": {"intValue": "9007199254740993"}},  # past 2**53
            {"key": "db.system", "value": {"stringValue": "postgresql"}},
            {"key": "cached", "value": {"boolValue": False}},
            {"key": "ratio", "value": {"doubleValue": 0.25}},
            {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
            {"key": "peer", "value": {"kvlistValue": {"values": [PORT]}}},
            {"key": "raw", "value": {"bytesValue": "AAE="}},
        ],
        "status": {"code": 2, "message": "timeout"},
        "events": [
            {"timeUnixNano": 1544712660500000000, "name": "retry", "attributes": []},
        ],
        "links": [{"traceId": TRACE, "spanId": "0000000000000001"}],
        "futureField": {"anything": True},
    }
    body.update(fields)
    return body


def test_a_hand_checked_json_export_is_stored_field_by_field(live_server, qd):
    answer = post(live_server.url, json.dumps(export(span())).encode())
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {}
    (stored,) = stored_spans(qd)
    assert stored.trace_id == TRACE and stored.span_id == CHILD and stored.parent_span_id == ROOT
    assert stored.service == "checkout"
    assert stored.kind == 3  # CLIENT
    assert stored.start_ns == 1_544_712_660_000_000_000
    assert stored.duration_ns == 1_000_000_000
    assert (stored.status_code, stored.status_message) == (2, "timeout")
    assert stored.attributes == {
        "db.rows": 9007199254740993,
        "db.system": "postgresql",
        "cached": False,
        "ratio": 0.25,
        "tags": ["a"],
        "peer": {"port": 5432},
        "raw": "AAE=",
        "resource.service.name": "checkout",
    }
    assert stored.events == [{"name": "retry", "time_ns": 1544712660500000000, "attributes": {}}]
    assert (stored.events_count, stored.links_count) == (1, 1)
    assert stored.truncated is False


def test_uppercase_hex_numbers_for_int64_and_enum_names_are_read_too(live_server, qd):
    body = span(
        span_id=CHILD.upper(),
        startTimeUnixNano=1544712660000000000,
        endTimeUnixNano=1544712660000000100,
        kind="SPAN_KIND_SERVER",
    )
    answer = post(live_server.url, json.dumps(export(body)).encode())
    assert answer.status == 200, answer.body
    (stored,) = stored_spans(qd)
    assert stored.span_id == CHILD and stored.kind == 2 and stored.duration_ns == 100


def test_a_chunked_body_without_content_length_is_read_whole(live_server, qd):
    text = json.dumps(export(span(), span(span_id=ROOT, parent="", name="GET /cart"))).encode()
    pieces = [text[i : i + 100] for i in range(0, len(text), 100)]
    answer = post(live_server.url, pieces)
    assert answer.status == 200, answer.body
    assert {s.span_id for s in stored_spans(qd)} == {ROOT, CHILD}
    (trace,) = stored_traces(qd)
    assert trace.root_operation == "GET /cart" and trace.span_count == 2


def test_a_missing_service_name_is_unknown_service(live_server, qd):
    answer = post(live_server.url, json.dumps(export(span(), service=None)).encode())
    assert answer.status == 200
    assert stored_spans(qd)[0].service == "unknown_service"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"traceId": "W47/95gDgQPSabYzgT/GDA=="}, "traceId must be 32 hex digits"),  # base64
        ({"traceId": "0" * 32}, "traceId is all zeros"),
        ({"spanId": "xyz"}, "spanId must be 16 hex digits"),
        ({"spanId": None}, "spanId is missing"),
        ({"name": ""}, "name is missing"),
        ({"endTimeUnixNano": "1544712659000000000"}, "endTimeUnixNano is before"),
        ({"startTimeUnixNano": "soon"}, "startTimeUnixNano must be a non-negative integer"),
        ({"kind": 9}, "kind must be one of"),
    ],
)
def test_a_bad_span_is_rejected_with_its_reason_and_the_rest_is_kept(
    live_server, qd, changes, reason
):
    good = span(span_id=ROOT, parent="", name="GET /cart")
    answer = post(live_server.url, json.dumps(export(good, span(**changes))).encode())
    assert answer.status == 200, answer.body
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert reason in partial["errorMessage"]
    assert [s.span_id for s in stored_spans(qd)] == [ROOT]


def test_nul_characters_are_stored_as_replacement_characters(live_server, qd):
    body = span(
        name="GET /\x00x", attributes=[{"key": "k\x00", "value": {"stringValue": "a\x00b"}}]
    )
    body["status"] = {"code": 2, "message": "bad\x00"}
    answer = post(live_server.url, json.dumps(export(body)).encode())
    assert answer.status == 200, answer.body
    (stored,) = stored_spans(qd)
    assert stored.name == "GET /\ufffdx" and stored.status_message == "bad\ufffd"
    assert stored.attributes["k\ufffd"] == "a\ufffdb"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"endTimeUnixNano": str(2**64 - 1)}, "past 2262"),
        ({"endTimeUnixNano": str(2**64)}, "must be a non-negative integer"),
        ({"attributes": [{"key": "n", "value": {"intValue": str(2**63)}}]}, "64-bit integer"),
        ({"attributes": [{"key": "n", "value": {"intValue": "9" * 5000}}]}, "64-bit integer"),
    ],
)
def test_numbers_past_what_the_store_holds_reject_the_span_not_the_export(
    live_server, qd, changes, reason
):
    answer = post(live_server.url, json.dumps(export(span(**changes))).encode())
    assert answer.status == 200, answer.body
    assert reason in answer.json()["partialSuccess"]["errorMessage"]
    assert stored_spans(qd) == []


def test_huge_dropped_counts_are_capped_to_what_the_column_holds(live_server, qd):
    body = span(droppedEventsCount=str(2**40), droppedLinksCount=2**40)
    answer = post(live_server.url, json.dumps(export(body)).encode())
    assert answer.status == 200, answer.body
    (stored,) = stored_spans(qd)
    assert stored.events_count == stored.links_count == 2**31 - 1
