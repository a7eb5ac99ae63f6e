"""Signing in: passwords, rate limiting, session cookies, the trusted auth-proxy header."""

from __future__ import annotations

from sqlalchemy import select

from app.auth.accounts import create_user
from app.config import AuthConfig
from app.factory import create_app
from app.models import ApiToken, User
from tests.conftest import PASSWORD, sign_in


def test_a_right_password_signs_in_and_lands_on_the_page_asked_for(app, make_user):
    make_user("dave", "viewer")
    client = app.test_client()
    first = client.get("/services?health=critical")
    assert first.status_code == 302
    login_page = client.get(first.headers["Location"])
    assert 'value="/services?health=critical"' in login_page.get_data(as_text=True)
    from tests.conftest import csrf_token_from

    token = csrf_token_from(login_page.get_data(as_text=True))
    response = client.post(
        "/login",
        data={
            "username": "dave",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/services?health=critical",
        },
    )
    assert response.headers["Location"] == "/services?health=critical"


def test_a_next_address_off_this_site_is_ignored(app, make_user):
    make_user("erin", "viewer")
    client = app.test_client()
    from tests.conftest import csrf_token_from

    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login",
        data={
            "username": "erin",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/x",
        },
    )
    assert response.headers["Location"] == "/"


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(app, make_user):
    make_user("frank", "viewer")
    wrong_password = sign_in(app.test_client(), "frank", "not the password")
    no_such_user = sign_in(app.test_client(), "nobody", "not the password")
    assert wrong_password.status_code == no_such_user.status_code == 401
    assert "Wrong user name or password" in wrong_password.get_data(as_text=True)


def test_repeated_failures_lock_the_user_out_for_a_while_even_with_the_right_password(
    app, make_user
):
    make_user("grace", "viewer")
    for _ in range(5):
        assert sign_in(app.test_client(), "grace", "guess").status_code == 401
    locked = sign_in(app.test_client(), "grace", PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    # Another user from the same address is not yet blocked.
    make_user("heidi", "viewer")
    assert sign_in(app.test_client(), "heidi", PASSWORD).status_code == 302


def test_the_session_cookie_is_http_only_same_site_and_secure_by_default(make_qd, make_user):
    from app.config import ServerConfig

    qd = make_qd(server=ServerConfig())
    with qd.store.session() as db:
        create_user(db, "ivan", "viewer", PASSWORD)
    app = create_app(qd=qd)
    response = sign_in(app.test_client(), "ivan")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_passwords_and_tokens_are_stored_only_as_hashes(qd, make_user, make_token):
    make_user("judy", "viewer")
    token = make_token("deploy", "operator")
    with qd.store.session() as db:
        user = db.scalar(select(User).where(User.name == "judy"))
        stored = db.scalar(select(ApiToken).where(ApiToken.name == "deploy"))
    assert PASSWORD not in user.password_hash and user.password_hash.startswith("$argon2")
    assert token not in stored.token_hash and len(stored.token_hash) == 64


def test_a_password_change_ends_existing_sessions(app, qd, signed_in):
    client = signed_in("viewer")
    assert client.get("/services").status_code == 200
    from app.auth.administration import reset_password

    reset_password(qd, "cli:ops", "user-viewer", "a brand new password")
    assert client.get("/services").status_code == 302


def test_trusted_header_is_honoured_only_from_configured_proxies(make_qd):
    qd = make_qd(auth=AuthConfig(header="X-Forwarded-User", trusted_proxies=("10.9.0.0/16",)))
    app = create_app(qd=qd)
    client = app.test_client()
    from_proxy = client.get(
        "/api/v1/services",
        headers={"X-Forwarded-User": "kim"},
        environ_base={"REMOTE_ADDR": "10.9.1.2"},
    )
    assert from_proxy.status_code == 200
    spoofed = client.get(
        "/api/v1/services",
        headers={"X-Forwarded-User": "kim"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert spoofed.status_code == 401
    with qd.store.session() as db:
        assert db.scalar(select(User.role).where(User.name == "kim")) == "viewer"


def test_a_proxy_vouched_name_outside_the_allowed_pattern_gets_a_clear_403(make_qd):
    qd = make_qd(auth=AuthConfig(header="X-Remote-User", trusted_proxies=("10.9.0.0/16",)))
    client = create_app(qd=qd).test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9.1.2"
    bad = "<b>" + "x" * 300
    page = client.get("/services", headers={"X-Remote-User": bad})
    assert page.status_code == 403
    text = page.get_data(as_text=True)
    assert "does not accept" in text and "<b>" not in text and "x" * 50 not in text
    api = client.get("/api/v1/services", headers={"X-Remote-User": bad})
    assert api.status_code == 403 and api.json["error"]["code"] == "forbidden"
    assert "does not accept" in api.json["error"]["message"]
    with qd.store.session() as db:
        assert db.scalar(select(User.id)) is None


def test_a_proxy_vouched_user_gets_role_changes_and_disabling_at_once(make_qd):
    from app.auth.administration import set_disabled, set_role

    qd = make_qd(auth=AuthConfig(header="X-Remote-User", trusted_proxies=("10.9.0.0/16",)))
    client = create_app(qd=qd).test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9.1.2"
    with qd.store.session() as db:
        create_user(db, "root", "admin", PASSWORD)
    headers = {"X-Remote-User": "kim"}
    assert client.get("/admin/users", headers=headers).status_code == 403
    set_role(qd, "cli:ops", "kim", "admin")
    assert client.get("/admin/users", headers=headers).status_code == 200
    set_disabled(qd, "cli:ops", "kim", True)
    denied = client.get("/api/v1/services", headers=headers)
    assert denied.status_code == 403 and "disabled" in denied.json["error"]["message"]
