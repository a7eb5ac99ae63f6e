"""Server-Sent Events: open pages hear about changes, and many streams do not starve the API."""

from __future__ import annotations

import http.client
import json
import time

from app.config import ServerConfig


def open_stream(server, token: str) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/events", headers={"Authorization": f"Bearer {token}"})
    return connection


def read_event(response, deadline: float) -> dict | None:
    """Read lines until a `change` event arrives; return its data."""
    event = None
    while time.monotonic() < deadline:
        line = response.readline().decode()
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "change":
            return json.loads(line.split(":", 1)[1])
    return None


def test_a_change_reaches_an_open_stream_at_once(live_server, qd, make_token):
    token = make_token("watcher", "viewer")
    connection = open_stream(live_server, token)
    try:
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        assert response.readline().startswith(b"retry:")
        qd.feed.publish({"services", "service:orders"})
        # Generous: the heartbeat comes every 15 s, so only the change itself can arrive first.
        data = read_event(response, time.monotonic() + 10)
        assert data == {"topics": ["service:orders", "services"]}
    finally:
        connection.close()


def test_fifty_open_streams_leave_the_api_responsive(make_qd, make_token):
    from app.factory import create_app
    from tests.conftest import LiveServer

    qd = make_qd(server=ServerConfig(cookie_secure=False, threads=64))
    server = LiveServer(create_app(qd=qd), threads=qd.config.server.threads).start()
    token = make_token("many", "viewer")
    streams = []
    try:
        for _ in range(50):
            connection = open_stream(server, token)
            response = connection.getresponse()
            assert response.status == 200
            response.readline()
            streams.append((connection, response))
        # The API still answers (latency under many streams is measured in bench/, not here).
        api = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            api.request("GET", "/api/v1/services", headers={"Authorization": f"Bearer {token}"})
            answer = api.getresponse()
            assert answer.status == 200 and "services" in json.loads(answer.read())
        finally:
            api.close()
        qd.feed.publish({"sources"})
        deadline = time.monotonic() + 10
        heard = sum(1 for _, r in streams if read_event(r, deadline) == {"topics": ["sources"]})
        assert heard == 50
    finally:
        for connection, _ in streams:
            connection.close()
        qd.feed.close()
        server.stop()


def test_the_event_stream_needs_a_signed_in_caller(live_server):
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=5)
    try:
        connection.request("GET", "/events")
        assert connection.getresponse().status == 302
    finally:
        connection.close()


def test_a_stream_resumed_across_a_restart_is_told_to_refresh_everything(
    live_server, qd, make_token
):
    token = make_token("returning", "viewer")
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    try:
        connection.request(
            "GET",
            "/events",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "0ld3p0c8.41"},
        )
        response = connection.getresponse()
        assert read_event(response, time.monotonic() + 2) == {"topics": ["*"]}
    finally:
        connection.close()


def test_a_stream_resumed_in_the_same_process_replays_what_it_missed(live_server, qd, make_token):
    token = make_token("blinker", "viewer")
    before = qd.feed.seq
    qd.feed.publish({"service:orders"})
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    try:
        connection.request(
            "GET",
            "/events",
            headers={
                "Authorization": f"Bearer {token}",
                "Last-Event-ID": f"{qd.feed.epoch}.{before}",
            },
        )
        response = connection.getresponse()
        assert read_event(response, time.monotonic() + 2) == {"topics": ["service:orders"]}
    finally:
        connection.close()
