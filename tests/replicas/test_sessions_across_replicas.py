"""Behind a load balancer without sticky sessions, any replica honours a sign-in and its CSRF."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

from app.auth.accounts import create_user
from tests.conftest import PASSWORD
from tests.replicas.conftest import opened

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def call(opener, url: str, form: dict | None = None) -> tuple[int, str, str]:
    """GET (or POST a form); return status, body and the Location header."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=5) as response:
            return response.status, response.read().decode(), response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        body, location = exc.read().decode(), exc.headers.get("Location", "")
        exc.close()
        return exc.code, body, location


def test_a_sign_in_and_its_csrf_token_work_on_every_replica(make_fleet, pg_store):
    with opened(pg_store) as store, store.session() as db:
        create_user(db, "alice", "viewer", PASSWORD)
    fleet = make_fleet(pg_store)
    r1, r2, r3 = (fleet.start(name) for name in ("r1", "r2", "r3"))
    jar = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

    # The form comes from one replica, the sign-in lands on another.
    token = CSRF_RE.search(call(browser, f"{r1.base}/login")[1]).group(1)
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    status, _, location = call(browser, f"{r2.base}/login", form)
    assert status == 302 and "/login" not in location
    status, page, _ = call(browser, f"{r3.base}/sources")
    assert status == 200 and "Sources" in page

    # A form rendered by the third replica posts to the first: its CSRF token holds there.
    token = CSRF_RE.search(page).group(1)
    assert call(browser, f"{r1.base}/logout", {"csrf_token": "forged"})[0] == 400
    status, _, location = call(browser, f"{r1.base}/logout", {"csrf_token": token})
    assert status == 302
    # Signed out everywhere: the session row is gone from the shared store.
    status, _, location = call(browser, f"{r2.base}/sources")
    assert status == 302 and "/login" in location
