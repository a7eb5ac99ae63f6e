"""Sign-in rate limiting: atomic under parallel guesses, per (user, address), no lockout weapon."""

from __future__ import annotations

import threading
from collections import Counter

import requests
from sqlalchemy import func, select

from app.auth.accounts import password_checks
from app.config import AuthConfig, ServerConfig
from app.factory import create_app
from app.models import SignInFailure, UserSession
from tests.conftest import PASSWORD, LiveServer, csrf_token_from, sign_in

ATTACKER, ADMIN_DESK, PROXY = "192.0.2.66", "198.51.100.7", "10.0.0.5"


def _client(app, address: str, forwarded_for: str | None = None):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    if forwarded_for is not None:
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client


def _attempt(app, name: str, password: str, address: str, forwarded_for: str | None = None) -> int:
    return sign_in(_client(app, address, forwarded_for), name, password).status_code


def test_thirty_parallel_wrong_passwords_reach_the_password_check_at_most_max_failures_times(
    app, qd, make_user
):
    make_user("root", "admin")
    limit = qd.config.auth.max_failures
    server = LiveServer(app, threads=32).start()
    try:
        browsers = []
        for _ in range(30):
            browser = requests.Session()
            page = browser.get(f"{server.url}/login", timeout=30)
            browsers.append((browser, csrf_token_from(page.text)))
        start = threading.Barrier(len(browsers))
        statuses: list[int] = []

        def guess(browser, token):
            start.wait(timeout=30)
            form = {"username": "root", "password": "not it", "csrf_token": token}
            answer = browser.post(
                f"{server.url}/login", data=form, allow_redirects=False, timeout=60
            )
            statuses.append(answer.status_code)

        checks_before = password_checks()
        threads = [threading.Thread(target=guess, args=pair) for pair in browsers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
    finally:
        server.stop()
    assert Counter(statuses) == {401: limit, 429: 30 - limit}
    assert password_checks() - checks_before == limit
    with qd.store.session() as db:
        assert db.scalar(select(func.count()).select_from(SignInFailure)) == limit


def test_a_guesser_at_one_address_cannot_lock_the_admin_out_from_another(app, qd, make_user):
    make_user("root", "admin")
    statuses = [_attempt(app, "root", "guess", ATTACKER) for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    assert _attempt(app, "root", PASSWORD, ATTACKER) == 429
    assert _attempt(app, "root", PASSWORD, ADMIN_DESK) == 302


def test_guesses_from_many_addresses_meet_the_slower_per_user_limit(make_qd):
    qd = make_qd(auth=AuthConfig(max_failures=2, user_max_failures=5))
    app = create_app(qd=qd)
    from app.auth.accounts import create_user

    with qd.store.session() as db:
        create_user(db, "root", "admin", PASSWORD)
    statuses = [_attempt(app, "root", "guess", f"192.0.2.{n}") for n in (1, 1, 1, 2, 2, 3, 3)]
    assert statuses == [401, 401, 429, 401, 401, 401, 429]
    assert _attempt(app, "root", PASSWORD, ADMIN_DESK) == 429


def test_a_right_password_clears_the_failures_of_that_address(app, qd, make_user):
    make_user("root", "admin")
    for _ in range(4):
        _attempt(app, "root", "typo", ADMIN_DESK)
    assert _attempt(app, "root", PASSWORD, ADMIN_DESK) == 302
    assert [_attempt(app, "root", "typo", ADMIN_DESK) for _ in range(5)] == [401] * 5


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(app, qd, make_user):
    make_user("root", "admin")
    # Without [server] forwarded_allow_ips, a made-up header cannot buy fresh addresses.
    statuses = [_attempt(app, "root", "guess", PROXY, f"203.0.113.{n}") for n in range(6)]
    assert statuses == [401] * 5 + [429]
    with qd.store.session() as db:
        assert set(db.scalars(select(SignInFailure.address))) == {PROXY}


def test_x_forwarded_for_names_the_client_through_a_trusted_proxy(make_qd):
    server = ServerConfig(cookie_secure=False, forwarded_allow_ips=(PROXY,))
    qd = make_qd(server=server)
    app = create_app(qd=qd)
    from app.auth.accounts import create_user

    with qd.store.session() as db:
        create_user(db, "root", "admin", PASSWORD)
    # The attacker prepends a fake address; the proxy appends the real one.
    spoofed = f"{ADMIN_DESK}, {ATTACKER}"
    statuses = [_attempt(app, "root", "guess", PROXY, spoofed) for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    with qd.store.session() as db:
        assert set(db.scalars(select(SignInFailure.address))) == {ATTACKER}
    assert _attempt(app, "root", PASSWORD, PROXY, ADMIN_DESK) == 302
    # A peer that is not a trusted proxy cannot use the header at all.
    assert _attempt(app, "root", "guess", ATTACKER, ADMIN_DESK) == 429
    with qd.store.session() as db:
        assert db.scalar(select(UserSession.address)) == ADMIN_DESK
