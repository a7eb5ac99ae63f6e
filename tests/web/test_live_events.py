"""Server-Sent Events: pages hear about changes, streams hold no thread and follow auth."""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest

from app.config import ServerConfig
from app.factory import create_app
from app.models import ApiToken, User, utcnow
from app.views.live import open_streams
from tests.conftest import PASSWORD, LiveServer, csrf_token_from

TIMEOUT = 10.0


def server_config(**keys) -> ServerConfig:
    return dataclasses.replace(ServerConfig(cookie_secure=False, bind="127.0.0.1:0"), **keys)


@pytest.fixture
def serve(make_qd) -> Iterator:
    """Return a factory that serves a fresh app on the real server; stops them all at the end."""
    started: list[tuple[LiveServer, object]] = []

    def factory(url: str | None = None, **server_keys):
        qd = make_qd(url, server=server_config(**server_keys))
        server = LiveServer(create_app(qd=qd), threads=qd.config.server.threads).start()
        started.append((server, qd))
        return server, qd

    yield factory
    for server, qd in started:
        qd.feed.close()
        server.stop()


OPENED: list[Stream] = []


@pytest.fixture(autouse=True)
def _close_streams():
    yield
    while OPENED:
        OPENED.pop().close()


class Stream:
    """One open `GET /events` over its own connection (closed at the end of the test)."""

    def __init__(self, server, headers: dict, last_event_id: str = "") -> None:
        OPENED.append(self)
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        if last_event_id:
            headers = {**headers, "Last-Event-ID": last_event_id}
        self.connection.request("GET", "/events", headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.getheader = self.response.getheader
        self.readline = self.response.readline
        self.read = self.response.read

    def close(self) -> None:
        self.response.close()
        self.connection.close()


open_stream = Stream


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def next_event(response, deadline: float | None = None) -> tuple[str, dict] | None:
    """Read the next event (name, data), skipping comments; None when the stream ends."""
    deadline = deadline or time.monotonic() + TIMEOUT
    name, data = "message", None
    while time.monotonic() < deadline:
        line = response.readline().decode()
        if not line:
            return None
        line = line.rstrip("\n")
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = json.loads(line.split(":", 1)[1])
        elif line == "" and data is not None:
            return name, data
    raise AssertionError("no event in time")


def read_change(response) -> dict | None:
    """Read events until a `change` arrives; return its data."""
    while (event := next_event(response)) is not None:
        if event[0] == "change":
            return event[1]
    return None


def wait_until(condition, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def get(server, path: str, headers: dict) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def signed_in_cookie(server, name: str) -> dict:
    """Sign in through the real form over HTTP; return the session cookie header."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/login")
        page = connection.getresponse()
        cookie = page.getheader("Set-Cookie", "").split(";", 1)[0]
        token = csrf_token_from(page.read().decode())
        body = f"username={name}&password={PASSWORD.replace(' ', '+')}&csrf_token={token}"
        connection.request(
            "POST",
            "/login",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
        )
        answer = answer_of(connection)
        assert answer.status == 302, answer.read()
        return {"Cookie": answer.getheader("Set-Cookie").split(";", 1)[0]}
    finally:
        connection.close()


def answer_of(connection) -> http.client.HTTPResponse:
    response = connection.getresponse()
    response.read()
    return response


def test_a_change_reaches_an_open_stream(live_server, qd, make_token):
    response = open_stream(live_server, bearer(make_token("watcher", "viewer")))
    try:
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        assert response.getheader("Cache-Control") == "no-cache"
        assert response.readline().startswith(b"retry:")
        qd.feed.publish({"services", "service:orders"})
        assert read_change(response) == {"topics": ["service:orders", "services"]}
    finally:
        response.close()


def test_two_hundred_open_streams_hold_no_worker_thread(serve, make_token):
    # Four workers: a server that gave each stream a thread would stop answering at the fifth.
    server, qd = serve(threads=4, streams_per_user=500)
    token = make_token("many", "viewer")
    streams = []
    try:
        for _ in range(200):
            response = open_stream(server, bearer(token))
            assert response.status == 200
            response.readline()
            streams.append(response)
        status, body = get(server, "/api/v1/services", bearer(token))
        assert status == 200 and "services" in json.loads(body)
        assert get(server, "/healthz", {})[0] == 200
        qd.feed.publish({"sources"})
        assert [read_change(r) for r in streams] == [{"topics": ["sources"]}] * 200
    finally:
        for response in streams:
            response.close()


def test_the_event_stream_needs_a_signed_in_caller(live_server):
    assert get(live_server, "/events", {})[0] == 302
    assert get(live_server, "/events", bearer("qd_not-a-token"))[0] == 401


def test_a_stream_resumed_across_a_restart_is_told_to_refresh_everything(live_server, make_token):
    token = make_token("returning", "viewer")
    response = open_stream(live_server, bearer(token), last_event_id="0ld3p0c8.41")
    try:
        assert read_change(response) == {"topics": ["*"]}
    finally:
        response.close()


def test_a_stream_resumed_in_the_same_process_replays_what_it_missed(live_server, qd, make_token):
    token = make_token("blinker", "viewer")
    before = qd.feed.seq
    qd.feed.publish({"service:orders"})
    response = open_stream(live_server, bearer(token), last_event_id=f"{qd.feed.epoch}.{before}")
    try:
        assert read_change(response) == {"topics": ["service:orders"]}
    finally:
        response.close()


def test_one_caller_past_the_cap_is_refused_with_429_and_retry_after(serve, make_token):
    server, qd = serve(streams_per_user=3)
    mine, theirs = make_token("tabs", "viewer"), make_token("other", "viewer")
    streams = [open_stream(server, bearer(mine)) for _ in range(3)]
    try:
        assert [s.status for s in streams] == [200, 200, 200]
        refused = open_stream(server, bearer(mine))
        assert refused.status == 429
        assert int(refused.getheader("Retry-After")) > 0
        assert b"streams_per_user" in refused.read()
        metrics = get(server, "/metrics", {})[1].decode()
        assert "quarterdeck_live_streams 3.0" in metrics
        assert 'quarterdeck_live_streams_refused_total{limit="streams_per_user"} 1.0' in metrics
        other = open_stream(server, bearer(theirs))
        assert other.status == 200
        other.close()
        # A closed tab gives its place back.
        streams.pop().close()
        app_streams = open_streams(server.app)
        wait_until(lambda: app_streams.count("token:tabs") == 2)
        again = open_stream(server, bearer(mine))
        assert again.status == 200
        streams.append(again)
    finally:
        for response in streams:
            response.close()


def test_the_server_refuses_streams_past_its_own_limit(serve, make_token):
    server, _ = serve(max_streams=2, streams_per_user=10)
    streams = [open_stream(server, bearer(make_token(f"t{i}", "viewer"))) for i in range(2)]
    try:
        refused = open_stream(server, bearer(make_token("late", "viewer")))
        assert refused.status == 429 and refused.getheader("Retry-After")
        assert b"max_streams" in refused.read()
    finally:
        for response in streams:
            response.close()


def revoke(qd, name: str) -> None:
    with qd.store.session(write=True) as db:
        db.query(ApiToken).filter_by(name=name).one().revoked_at = utcnow()


def disable(qd, name: str) -> None:
    with qd.store.session(write=True) as db:
        db.query(User).filter_by(name=name).one().disabled = True


def test_a_revoked_tokens_open_stream_closes(serve):
    server, qd = serve(stream_recheck_s=1)
    from app.auth.accounts import create_token

    with qd.store.session(write=True) as db:
        token = create_token(db, "leaked", "viewer")
    response = open_stream(server, bearer(token))
    try:
        assert response.status == 200
        # Revoked in the store only, as another replica would: the periodic check finds it.
        revoke(qd, "leaked")
        assert_stream_ends(response, "signed-out")
        metrics = get(server, "/metrics", {})[1].decode()
        assert 'quarterdeck_live_streams_ended_total{reason="signed-out"} 1.0' in metrics
        assert open_stream(server, bearer(token)).status == 401
    finally:
        response.close()


def test_a_disabled_users_open_stream_closes_when_auth_changes(serve):
    from app.auth.accounts import create_user

    # No periodic check within the test: the "auth" topic alone must close it.
    server, qd = serve(stream_recheck_s=3600)
    with qd.store.session(write=True) as db:
        create_user(db, "mallory", "viewer", PASSWORD)
        create_user(db, "carol", "viewer", PASSWORD)
    mallory, carol = signed_in_cookie(server, "mallory"), signed_in_cookie(server, "carol")
    hers, others = open_stream(server, mallory), open_stream(server, carol)
    try:
        assert hers.status == 200 and others.status == 200
        disable(qd, "mallory")
        qd.feed.publish({"auth"})
        assert_stream_ends(hers, "signed-out")
        # Everyone else's stream stays open and hears the change.
        assert read_change(others) == {"topics": ["auth"]}
        qd.feed.publish({"services"})
        assert read_change(others) == {"topics": ["services"]}
    finally:
        hers.close()
        others.close()


def assert_stream_ends(response, reason: str) -> None:
    events = []
    while (event := next_event(response)) is not None:
        events.append(event)
    assert events and events[-1] == ("end", {"reason": reason}), events
    assert response.read() == b""


def test_closed_streams_leave_no_log_lines(serve, make_token, caplog):
    server, qd = serve()
    token = make_token("quiet", "viewer")
    with caplog.at_level(logging.INFO):
        streams = [open_stream(server, bearer(token)) for _ in range(5)]
        for response in streams:
            response.readline()
            response.close()
        app_streams = open_streams(server.app)
        wait_until(lambda: app_streams.count() == 0)
        qd.feed.publish({"services"})  # the next write would reach the closed sockets
        time.sleep(0.3)
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert noisy == []


def test_stopping_the_server_ends_open_streams_with_an_end_event(make_qd, make_token):
    qd = make_qd()
    server = LiveServer(create_app(qd=qd)).start()
    response = open_stream(server, bearer(make_token("late-night", "viewer")))
    assert response.status == 200
    server.stop()
    assert not server.server.running
    assert_stream_ends(response, "shutdown")
    with pytest.raises(OSError):
        get(server, "/healthz", {})


def test_under_a_plain_wsgi_server_the_stream_runs_in_the_request_thread(app, qd, make_token):
    client = app.test_client()
    response = client.get("/events", headers=bearer(make_token("dev", "viewer")), buffered=False)
    body = iter(response.response)
    assert next(body).startswith(b"retry:")
    qd.feed.publish({"sources"})
    assert re.search(rb'data: \{"topics": \["sources"\]\}', next(body))
    assert open_streams(app).count() == 1
    response.close()
    assert open_streams(app).count() == 0


def sign_in_page(page, server, name: str) -> None:
    page.goto(f"{server.url}/login?next=/services")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/services")


@pytest.mark.browser
def test_a_tab_past_the_cap_says_live_updates_are_paused_and_still_works(serve, browser):
    from app.auth.accounts import create_user

    server, qd = serve(streams_per_user=1)
    with qd.store.session(write=True) as db:
        create_user(db, "tabby", "viewer", PASSWORD)
    context = browser.new_context()
    try:
        first = context.new_page()
        sign_in_page(first, server, "tabby")
        first.wait_for_selector('#live-indicator[data-state="connected"]')
        second = context.new_page()
        second.goto(f"{server.url}/services")
        indicator = second.wait_for_selector('#live-indicator[data-state="paused"]')
        assert "too many live pages" in indicator.get_attribute("title")
        assert "Next try in about" in indicator.get_attribute("title")
        assert indicator.inner_text() == "Live paused"
        # The page itself keeps working, and the first tab stays live.
        second.click("text=Sources")
        second.wait_for_url(f"{server.url}/sources")
        assert first.get_attribute("#live-indicator", "data-state") == "connected"
    finally:
        context.close()


@pytest.mark.browser
def test_an_open_page_of_a_disabled_user_says_signed_out(serve, page):
    from app.auth.accounts import create_user

    server, qd = serve(stream_recheck_s=3600)
    with qd.store.session(write=True) as db:
        create_user(db, "leaver", "viewer", PASSWORD)
    sign_in_page(page, server, "leaver")
    page.wait_for_selector('#live-indicator[data-state="connected"]')
    disable(qd, "leaver")
    qd.feed.publish({"auth"})
    indicator = page.wait_for_selector('#live-indicator[data-state="expired"]')
    assert indicator.inner_text() == "Signed out"


@pytest.mark.browser
def test_an_open_page_refreshes_its_regions_when_their_topic_changes(serve, page):
    from app.auth.accounts import create_user

    server, qd = serve()
    with qd.store.session(write=True) as db:
        create_user(db, "watcher", "viewer", PASSWORD)
    sign_in_page(page, server, "watcher")
    page.wait_for_selector('#live-indicator[data-state="connected"]')
    with page.expect_request(lambda r: r.headers.get("hx-request") == "true") as refresh:
        qd.feed.publish({"services"})
    assert refresh.value.url.startswith(f"{server.url}/services")


def test_the_server_leaves_forwarded_addresses_to_the_apps_own_trusted_proxies(make_qd):
    from app.config import AuthConfig

    # A proxy on loopback vouches for bob and forwards his address: the app must see the
    # proxy's address (which it trusts), not one the server took from X-Forwarded-For.
    qd = make_qd(auth=AuthConfig(header="X-Remote-User", trusted_proxies=("127.0.0.1",)))
    server = LiveServer(create_app(qd=qd)).start()
    try:
        headers = {"X-Remote-User": "bob", "X-Forwarded-For": "203.0.113.9"}
        status, _ = get(server, "/services", headers)
        assert status == 200
    finally:
        qd.feed.close()
        server.stop()


def test_a_head_request_answers_the_headers_and_takes_no_place_under_the_cap(serve, make_token):
    server, _ = serve(streams_per_user=1)
    token = make_token("prober", "viewer")
    for _ in range(3):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        connection.request("HEAD", "/events", headers=bearer(token))
        answer = connection.getresponse()
        assert answer.status == 200 and answer.read() == b""
        assert answer.getheader("Content-Type").startswith("text/event-stream")
        connection.close()
    assert open_streams(server.app).count() == 0
    assert open_stream(server, bearer(token)).status == 200
