"""The Idempotency-Key header end to end through a real WSGI server and HTTP client."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.client import HTTPResponse
from urllib.error import HTTPError
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from fleet.idempotency import IdempotencyMiddleware, parse_key_header
from fleet.idempotency.core import InvalidIdempotencyKey
from tests.fleet.conftest import kinds


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):
        threading.Thread(target=self._handle, args=(request, client_address), daemon=True).start()

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class OrdersApp:
    """A tiny orders service: POST /orders creates one, slowly when the body says so."""

    def __init__(self):
        self.created = []
        self.failed_once = False

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        if body.get("slow"):
            time.sleep(0.6)
        if body.get("flaky") and not self.failed_once:
            self.failed_once = True
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"try later"]
        self.created.append(body)
        answer = json.dumps({"order": len(self.created), "item": body.get("item")}).encode()
        start_response(
            "201 Created",
            [
                ("Content-Type", "application/json"),
                ("Location", f"/orders/{len(self.created)}"),
                ("X-Request-Cost", "3"),
            ],
        )
        return [answer]


@pytest.fixture
def served(make_guard) -> Iterator[tuple[str, OrdersApp, object]]:
    app = OrdersApp()
    guard = make_guard(ttl_ms=5000)
    server = make_server(
        "127.0.0.1",
        0,
        IdempotencyMiddleware(app, guard),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app, guard
    server.shutdown()
    server.server_close()


def post(url: str, body: dict, key: str | None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        url + "/orders",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if key is not None:
        request.add_header("Idempotency-Key", key)
    try:
        response: HTTPResponse = urllib.request.urlopen(request, timeout=10)
    except HTTPError as error:
        return error.code, dict(error.headers), error.read()
    with response:
        return response.status, dict(response.headers), response.read()


def test_a_retry_gets_the_stored_response_and_creates_nothing(served, redis_client):
    url, app, guard = served
    first = post(url, {"item": "tea"}, '"order-a1"')
    again = post(url, {"item": "tea"}, '"order-a1"')
    assert first[0] == again[0] == 201
    assert again[2] == first[2]
    assert again[1]["Location"] == "/orders/1"
    assert again[1]["Idempotent-Replayed"] == "true"
    assert "X-Request-Cost" not in again[1]  # only the chosen headers are kept
    assert len(app.created) == 1
    assert kinds(redis_client, guard.stream) == ["duplicate_completed"]


def test_another_payload_with_the_same_key_is_422(served, redis_client):
    url, app, guard = served
    assert post(url, {"item": "tea"}, "order-a2")[0] == 201
    status, headers, body = post(url, {"item": "coffee"}, "order-a2")
    assert status == 422
    assert headers["Content-Type"] == "application/problem+json"
    assert "another request payload" in json.loads(body)["detail"]
    assert kinds(redis_client, guard.stream) == ["payload_mismatch"]
    assert len(app.created) == 1


def test_the_same_key_while_the_first_runs_is_409(served, redis_client):
    url, app, guard = served
    slow = threading.Thread(target=post, args=(url, {"item": "tea", "slow": True}, "order-a3"))
    slow.start()
    time.sleep(0.2)
    status, headers, _ = post(url, {"item": "tea", "slow": True}, "order-a3")
    slow.join()
    assert status == 409
    assert headers["Retry-After"] == "1"
    assert kinds(redis_client, guard.stream) == ["duplicate_inflight"]
    assert len(app.created) == 1


@pytest.mark.parametrize("bad", ['"unterminated', '"a\\x"', "has space", '""', "x" * 300])
def test_a_malformed_key_is_400(served, bad):
    url, app, _ = served
    assert post(url, {"item": "tea"}, bad)[0] == 400
    assert app.created == []


def test_a_server_error_is_not_kept_so_the_retry_runs(served):
    url, app, _ = served
    assert post(url, {"item": "tea", "flaky": True}, "order-a4")[0] == 503
    assert post(url, {"item": "tea", "flaky": True}, "order-a4")[0] == 201
    assert len(app.created) == 1


def test_requests_without_the_header_pass_through_unguarded(served, redis_client):
    url, app, guard = served
    assert post(url, {"item": "tea"}, None)[0] == 201
    assert post(url, {"item": "tea"}, None)[0] == 201
    assert len(app.created) == 2
    assert redis_client.keys("idem:*") == []


def test_the_header_parser_follows_structured_field_strings():
    assert parse_key_header('"8e03978e-40d5-43e8-bc93-6894a57f9324"') == (
        "8e03978e-40d5-43e8-bc93-6894a57f9324"
    )
    assert parse_key_header('"say \\"hi\\""') == 'say "hi"'
    assert parse_key_header("plain-token_1") == "plain-token_1"
    with pytest.raises(InvalidIdempotencyKey):
        parse_key_header('"stray " quote"')
