"""What ingest refuses, and how: 400 with the reason, 413, 415, 401, 503 with Retry-After."""

from __future__ import annotations

import gzip
import json

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from app.config import OtlpConfig
from app.factory import create_app
from app.store import migrate
from tests.conftest import LiveServer
from tests.otlp.conftest import post, stored_spans
from tests.otlp.test_json_export import export, span
from tests.store.test_unrecorded_runs import refuse_writes

MIB = 1024 * 1024


@pytest.fixture
def qd(make_qd, sqlite_url):
    """SQLite only: these refusals happen before the store is asked; a 1 MiB body limit."""
    return make_qd(sqlite_url, otlp=OtlpConfig(max_body_mb=1))


def protobuf_export(count: int = 2) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "orders"
    spans = resource_spans.scope_spans.add().spans
    for i in range(count):
        s = spans.add()
        s.trace_id, s.span_id = bytes(range(1, 17)), (i + 1).to_bytes(8, "big")
        s.name, s.start_time_unix_nano, s.end_time_unix_nano = f"op-{i}", 10**18, 10**18 + 5
    return request.SerializeToString()


def status_of(answer) -> status_pb2.Status:
    status = status_pb2.Status()
    status.ParseFromString(answer.body)
    return status


def test_a_gzipped_protobuf_export_is_answered_in_protobuf(live_server, qd):
    answer = post(
        live_server.url,
        gzip.compress(protobuf_export()),
        "application/x-protobuf",
        {"Content-Encoding": "gzip"},
    )
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse()
    response.ParseFromString(answer.body)
    assert not response.HasField("partial_success")
    assert len(stored_spans(qd)) == 2


def test_a_rejected_protobuf_span_is_reported_as_partial_success(live_server, qd):
    request = ExportTraceServiceRequest()
    request.ParseFromString(protobuf_export())
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x00" * 16
    answer = post(live_server.url, request.SerializeToString(), "application/x-protobuf")
    response = ExportTraceServiceResponse()
    response.ParseFromString(answer.body)
    assert response.partial_success.rejected_spans == 1
    assert "traceId is all zeros" in response.partial_success.error_message
    assert len(stored_spans(qd)) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"resourceSpans": {}}', "resourceSpans must be a list"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}', "spans[0] must be an object"),
        ("\ud800".encode("utf-8", "surrogatepass"), "not JSON"),
    ],
)
def test_a_malformed_json_body_is_a_400_with_the_reason(live_server, qd, body, reason):
    answer = post(live_server.url, body)
    assert answer.status == 400
    assert answer.headers["content-type"].startswith("application/json")
    assert reason in answer.json()["message"]
    assert stored_spans(qd) == []


def test_a_truncated_protobuf_body_is_a_400_in_protobuf(live_server, qd):
    whole = protobuf_export()
    answer = post(live_server.url, whole[: len(whole) // 2], "application/x-protobuf")
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/x-protobuf"
    assert "not a protobuf ExportTraceServiceRequest" in status_of(answer).message
    assert stored_spans(qd) == []


def test_a_truncated_gzip_body_is_a_400(live_server, qd):
    packed = gzip.compress(json.dumps(export(span())).encode())
    answer = post(live_server.url, packed[:-10], headers={"Content-Encoding": "gzip"})
    assert answer.status == 400
    assert "truncated" in answer.json()["message"]


def test_a_body_over_the_limit_is_a_413_with_or_without_content_length(live_server, qd):
    big = json.dumps(export(span(name="x" * (MIB + 10)))).encode()
    assert post(live_server.url, big).status == 413
    chunked = post(live_server.url, [big[i : i + 65536] for i in range(0, len(big), 65536)])
    assert chunked.status == 413
    assert "limit" in chunked.json()["message"]


def test_a_gzip_bomb_is_a_413_after_at_most_the_limit_decompressed(live_server, qd):
    bomb = gzip.compress(b" " * (200 * MIB), compresslevel=9)  # 200 MiB of JSON whitespace
    assert len(bomb) < MIB // 2
    answer = post(live_server.url, bomb, headers={"Content-Encoding": "gzip"})
    assert answer.status == 413
    assert "once decompressed" in answer.json()["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", "application/xml"])
def test_another_content_type_is_a_415(live_server, qd, content_type):
    answer = post(live_server.url, b"{}", content_type)
    assert answer.status == 415
    assert "application/x-protobuf" in answer.json()["message"]


def test_an_unsupported_content_encoding_is_a_415(live_server, qd):
    answer = post(live_server.url, b"{}", headers={"Content-Encoding": "br"})
    assert answer.status == 415
    assert "br" in answer.json()["message"]


def test_ingest_needs_no_sign_in_and_no_csrf_token(app, qd):
    answer = app.test_client().post(
        "/v1/traces", data=json.dumps(export(span())), content_type="application/json"
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert len(stored_spans(qd)) == 1


def test_a_wrong_token_is_a_401_and_stores_nothing(live_server, qd, monkeypatch):
    monkeypatch.setenv("QUARTERDECK_OTLP_TOKEN", "right")
    body = json.dumps(export(span())).encode()
    answer = post(live_server.url, body, headers={"Authorization": "Bearer wrong"})
    assert answer.status == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert stored_spans(qd) == []
    assert post(live_server.url, body, headers={"Authorization": "Bearer right"}).status == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_that_refuses_writes_is_a_503_with_retry_after(
    request, make_qd, backend, sqlite_url
):
    if backend == "sqlite":
        url = sqlite_url
    else:
        url = request.getfixturevalue("postgres_server").create_database()
        migrate.upgrade(url)
    qd = make_qd(url)
    restore = refuse_writes(request, qd, url)
    try:
        # Enough spans to need new pages in every table and index they go to.
        body = json.dumps(export(*(span(span_id=f"{i + 1:016x}") for i in range(300))))
        answer = (
            create_app(qd=qd)
            .test_client()
            .post("/v1/traces", data=body, content_type="application/json")
        )
        assert answer.status_code == 503
        assert answer.headers["Retry-After"].isdigit()
        assert "unavailable" in answer.json["message"]
    finally:
        restore()


def test_a_body_of_the_other_format_is_a_400_not_a_guess(live_server, qd):
    as_json = post(live_server.url, protobuf_export(), "application/json")
    assert as_json.status == 400 and "not JSON" in as_json.json()["message"]
    as_protobuf = post(
        live_server.url, json.dumps(export(span())).encode(), "application/x-protobuf"
    )
    assert as_protobuf.status == 400
    assert "not a protobuf" in status_of(as_protobuf).message
    assert stored_spans(qd) == []


def test_a_limit_above_flasks_own_body_limit_is_honoured(make_qd, sqlite_url):
    qd = make_qd(sqlite_url, otlp=OtlpConfig(max_body_mb=12))
    server = LiveServer(create_app(qd=qd)).start()
    try:
        big = json.dumps(export(span(name="n", db_dump={"x": "y" * (9 * MIB)}))).encode()
        assert len(big) > 9 * MIB  # over the app's 8 MiB MAX_CONTENT_LENGTH for forms
        answer = post(server.url, big)
        assert answer.status == 200, answer.body[:200]
        assert len(stored_spans(qd)) == 1
    finally:
        server.stop()


def test_without_the_token_every_export_is_a_401_whatever_else_is_wrong(
    live_server, qd, monkeypatch
):
    monkeypatch.setenv("QUARTERDECK_OTLP_TOKEN", "right")
    assert post(live_server.url, b"{}", "text/plain").status == 401
    assert post(live_server.url, b"{not json").status == 401
