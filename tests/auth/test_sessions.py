"""Browser sessions live in the store: sign-out, lifetimes and user changes end them for good."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from werkzeug.exceptions import Unauthorized

from app.auth.access import identify
from app.auth.sessions import digest
from app.config import ServerConfig
from app.factory import create_app
from app.models import User, UserSession, utcnow
from tests.auth.conftest import cookie_of, post_form, session_id_in, signed_in_as
from tests.conftest import csrf_token_from


def _sessions_of(qd, name: str) -> list[UserSession]:
    with qd.store.session() as db:
        user_id = db.scalar(select(User.id).where(User.name == name))
        return list(db.scalars(select(UserSession).where(UserSession.user_id == user_id)))


def _sign_out(client):
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    return client.post("/logout", data={"csrf_token": token})


def test_the_cookie_carries_a_random_id_and_the_store_only_its_digest(app, qd, make_user):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    secret = session_id_in(app, client)
    assert len(secret) >= 40
    (row,) = _sessions_of(qd, "alice")
    assert row.secret_hash == digest(secret) and secret not in row.secret_hash
    data = app.session_interface.get_signing_serializer(app).loads(cookie_of(client))
    assert "uid" not in data and "alice" not in str(data)


def test_a_cookie_replayed_after_sign_out_gets_the_sign_in_page_and_401(app, qd, make_user):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    stolen = cookie_of(client)
    assert _sign_out(client).status_code == 302
    assert _sessions_of(qd, "alice") == []
    replay = app.test_client()
    replay.set_cookie("quarterdeck_session", stolen)
    page = replay.get("/services")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    api = replay.get("/api/v1/services")
    assert api.status_code == 401 and api.json["error"]["code"] == "unauthorized"


def test_signing_out_ends_only_that_browser_session(app, qd, make_user):
    make_user("alice", "viewer")
    laptop, phone = signed_in_as(app, "alice"), signed_in_as(app, "alice")
    _sign_out(laptop)
    assert laptop.get("/services").status_code == 302
    assert phone.get("/services").status_code == 200


def test_a_session_ends_at_its_absolute_lifetime_however_busy(app, qd, make_user):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    (row,) = _sessions_of(qd, "alice")
    assert row.expires_at - row.created_at == timedelta(hours=qd.config.server.session_hours)
    with qd.store.session() as db:  # signed in 12 h ago, busy until a moment ago
        db.execute(
            update(UserSession)
            .where(UserSession.id == row.id)
            .values(expires_at=utcnow() - timedelta(seconds=1), last_seen_at=utcnow())
        )
    assert client.get("/services").status_code == 302
    assert _sessions_of(qd, "alice") == []


def test_a_session_idle_past_the_idle_timeout_ends(app, qd, make_user):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    idle = timedelta(minutes=qd.config.server.session_idle_minutes)
    with qd.store.session() as db:
        db.execute(update(UserSession).values(last_seen_at=utcnow() - idle - timedelta(seconds=5)))
    assert client.get("/services").status_code == 302
    assert _sessions_of(qd, "alice") == []


def test_requests_keep_a_session_alive_within_the_idle_timeout(app, qd, make_user):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    idle = timedelta(minutes=qd.config.server.session_idle_minutes)
    long_ago = utcnow() - idle + timedelta(minutes=5)
    with qd.store.session() as db:
        db.execute(update(UserSession).values(last_seen_at=long_ago))
    assert client.get("/services").status_code == 200
    (row,) = _sessions_of(qd, "alice")
    assert row.last_seen_at > long_ago + timedelta(minutes=4)


def test_an_idle_timeout_of_zero_keeps_only_the_absolute_lifetime(make_qd, make_user):
    qd = make_qd(server=ServerConfig(cookie_secure=False, session_idle_minutes=0))
    app = create_app(qd=qd)
    from app.auth.accounts import create_user
    from tests.conftest import PASSWORD

    with qd.store.session() as db:
        create_user(db, "wall", "viewer", PASSWORD)
    client = signed_in_as(app, "wall")
    with qd.store.session() as db:
        db.execute(update(UserSession).values(last_seen_at=utcnow() - timedelta(hours=11)))
    assert client.get("/services").status_code == 200


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("disable", {}),
        (
            "password",
            {"password": "another long password", "password_again": "another long password"},
        ),
        ("delete", {"confirm": "bob"}),
        ("sessions/end", {}),
    ],
)
def test_disabling_deleting_a_new_password_or_signing_out_everywhere_ends_their_sessions(
    app, qd, make_user, path, form
):
    make_user("root", "admin")
    make_user("bob", "operator")
    admin, bob = signed_in_as(app, "root"), signed_in_as(app, "bob")
    stolen = cookie_of(bob)
    assert bob.get("/services").status_code == 200
    with qd.store.session() as db:
        bob_id = db.scalar(select(User.id).where(User.name == "bob"))
    response = post_form(admin, f"/admin/users/{bob_id}/{path}", form)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert bob.get("/services").status_code == 302
    replay = app.test_client()
    replay.set_cookie("quarterdeck_session", stolen)
    assert replay.get("/api/v1/services").status_code == 401
    assert _sessions_of(qd, "bob") == []
    assert admin.get("/services").status_code == 200


def test_a_role_change_applies_to_the_very_next_request(app, qd, make_user):
    make_user("root", "admin")
    make_user("second", "admin")
    make_user("vic", "viewer")
    root, second, vic = (signed_in_as(app, n) for n in ("root", "second", "vic"))
    assert second.get("/admin/users").status_code == 200
    assert vic.get("/admin/users").status_code == 403
    with qd.store.session() as db:
        ids = {name: user_id for name, user_id in db.execute(select(User.name, User.id))}
    post_form(root, f"/admin/users/{ids['second']}/role", {"role": "viewer"})
    post_form(root, f"/admin/users/{ids['vic']}/role", {"role": "admin"})
    assert second.get("/admin/users").status_code == 403
    assert vic.get("/admin/users").status_code == 200
    assert len(_sessions_of(qd, "second")) == 1  # still signed in, with less


def test_an_admin_who_resets_their_own_password_keeps_this_session_only(app, qd, make_user):
    make_user("root", "admin")
    here, elsewhere = signed_in_as(app, "root"), signed_in_as(app, "root")
    with qd.store.session() as db:
        root_id = db.scalar(select(User.id).where(User.name == "root"))
    new = "my new long password"
    post_form(here, f"/admin/users/{root_id}/password", {"password": new, "password_again": new})
    assert here.get("/admin/users").status_code == 200
    assert elsewhere.get("/admin/users").status_code == 302
    signed_in_as(app, "root", new)


def test_identify_tells_a_stream_whether_its_caller_may_still_watch(app, qd, make_user, make_token):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    headers = {"Cookie": f"quarterdeck_session={cookie_of(client)}"}
    with app.test_request_context("/events", headers=headers):
        who = identify(touch=False)
        assert who is not None and (who.name, who.role, who.via) == ("alice", "viewer", "session")
    _sign_out(client)
    with app.test_request_context("/events", headers=headers):
        assert identify() is None
    token = make_token("wall", "viewer")
    bearer = {"Authorization": f"Bearer {token}"}
    with app.test_request_context("/events", headers=bearer):
        assert identify().name == "token:wall"
    with qd.store.session() as db:
        from app.models import ApiToken

        db.execute(update(ApiToken).values(revoked_at=utcnow()))
    with app.test_request_context("/events", headers=bearer), pytest.raises(Unauthorized):
        identify()


def test_a_form_sent_after_the_session_ended_asks_to_sign_in(app, qd, make_user):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    with qd.store.session() as db:
        db.execute(update(UserSession).values(expires_at=utcnow()))
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 401


def test_signing_in_again_in_the_same_browser_replaces_its_session(app, qd, make_user):
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    first = session_id_in(app, client)
    from tests.conftest import PASSWORD

    token = csrf_token_from(client.get("/").get_data(as_text=True))
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=form).status_code == 302
    (row,) = _sessions_of(qd, "alice")
    assert row.secret_hash != digest(first) and row.secret_hash == digest(
        session_id_in(app, client)
    )


def test_a_live_streams_recheck_is_not_activity_that_holds_an_idle_session(app, qd, make_user):
    from app.auth.access import RECHECK_ENVIRON_KEY
    from app.views.live import RECHECK, recheck_caller

    assert RECHECK_ENVIRON_KEY == RECHECK
    make_user("alice", "viewer")
    client = signed_in_as(app, "alice")
    quiet_since = utcnow() - timedelta(minutes=30)
    with qd.store.session() as db:
        db.execute(update(UserSession).values(last_seen_at=quiet_since))
    headers = {"Cookie": f"quarterdeck_session={cookie_of(client)}"}
    with app.test_request_context("/events", headers=headers) as ctx:
        environ = ctx.request.environ
    assert recheck_caller(app, environ) is None
    (row,) = _sessions_of(qd, "alice")
    assert row.last_seen_at == quiet_since
    assert client.get("/services").status_code == 200
    (row,) = _sessions_of(qd, "alice")
    assert row.last_seen_at > quiet_since
