"""Helpers for the auth tests (which run on SQLite and on PostgreSQL: see BOTH_STORES)."""

from __future__ import annotations

from tests.conftest import PASSWORD, csrf_token_from, sign_in


def cookie_of(client, name: str = "quarterdeck_session") -> str:
    """Return the value of a test client's cookie."""
    cookie = client.get_cookie(name)
    assert cookie is not None, f"no {name} cookie"
    return cookie.value


def session_id_in(app, client) -> str:
    """Decode the signed session cookie and return the random session id it carries."""
    data = app.session_interface.get_signing_serializer(app).loads(cookie_of(client))
    return data["sid"]


def post_form(client, path: str, data: dict | None = None, page: str = "/admin/users"):
    """POST a form with the CSRF token taken from a page the client can see."""
    token = csrf_token_from(client.get(page).get_data(as_text=True))
    return client.post(path, data={**(data or {}), "csrf_token": token})


def signed_in_as(app, name: str, password: str = PASSWORD, **environ):
    """Return a fresh test client signed in as an existing user."""
    client = app.test_client()
    if environ:
        client.environ_base.update(environ)
    response = sign_in(client, name, password)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client
