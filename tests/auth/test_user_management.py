"""Admins manage people on the Users page: every change audited, the last admin always kept."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from app.models import ApiToken, User
from tests.auth.conftest import post_form, signed_in_as
from tests.conftest import csrf_token_from

NEW_PASSWORD = "a fresh long password"


def _id(qd, name: str) -> int | None:
    with qd.store.session() as db:
        return db.scalar(select(User.id).where(User.name == name))


def _user(qd, name: str) -> User | None:
    with qd.store.session() as db:
        return db.scalar(select(User).where(User.name == name))


@pytest.fixture
def admin(app, make_user):
    make_user("root", "admin")
    return signed_in_as(app, "root")


def test_an_admin_changes_role_disables_enables_and_resets_a_password(app, qd, admin, make_user):
    make_user("bob", "viewer")
    bob = _id(qd, "bob")
    page = admin.get(f"/admin/users/{bob}").get_data(as_text=True)
    assert "Change role" in page and "Disable" in page and "Type <strong>bob</strong>" in page
    assert post_form(admin, f"/admin/users/{bob}/role", {"role": "operator"}).status_code == 302
    assert _user(qd, "bob").role == "operator"
    assert post_form(admin, f"/admin/users/{bob}/disable").status_code == 302
    assert _user(qd, "bob").disabled
    assert "(disabled)" in admin.get("/admin/users").get_data(as_text=True)
    assert post_form(admin, f"/admin/users/{bob}/enable").status_code == 302
    assert not _user(qd, "bob").disabled
    form = {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    assert post_form(admin, f"/admin/users/{bob}/password", form).status_code == 302
    signed_in_as(app, "bob", NEW_PASSWORD)


def test_bad_input_is_refused_with_a_message_naming_the_field(qd, admin, make_user):
    make_user("bob", "viewer")
    bob = _id(qd, "bob")
    bad_role = post_form(admin, f"/admin/users/{bob}/role", {"role": "root"})
    assert bad_role.status_code == 400 and "role must be one of" in bad_role.get_data(as_text=True)
    short = post_form(
        admin, f"/admin/users/{bob}/password", {"password": "x", "password_again": "x"}
    )
    assert short.status_code == 400 and "password must be at least 12" in short.get_data(
        as_text=True
    )
    differ = post_form(
        admin, f"/admin/users/{bob}/password", {"password": NEW_PASSWORD, "password_again": "no"}
    )
    assert differ.status_code == 400 and "differ" in differ.get_data(as_text=True)
    assert post_form(admin, "/admin/users/99999/disable").status_code == 404


def test_deleting_needs_the_name_typed_to_confirm(qd, admin, make_user):
    make_user("bob", "viewer")
    bob = _id(qd, "bob")
    for typed in ("", "bo", "root"):
        refused = post_form(admin, f"/admin/users/{bob}/delete", {"confirm": typed})
        assert refused.status_code == 400
        assert "type the user name bob" in refused.get_data(as_text=True)
    assert _user(qd, "bob") is not None
    done = post_form(admin, f"/admin/users/{bob}/delete", {"confirm": "bob"})
    assert done.status_code == 302 and done.headers["Location"] == "/admin/users"
    assert _user(qd, "bob") is None


@pytest.mark.parametrize(
    ("path", "form"),
    [("role", {"role": "operator"}), ("disable", {}), ("delete", {"confirm": "root"})],
)
def test_the_last_enabled_admin_cannot_remove_themself(qd, admin, path, form):
    root = _id(qd, "root")
    assert "You are the only enabled admin" in admin.get(f"/admin/users/{root}").get_data(
        as_text=True
    )
    refused = post_form(admin, f"/admin/users/{root}/{path}", form)
    assert refused.status_code == 409
    assert "You are the last enabled admin" in refused.get_data(as_text=True)
    user = _user(qd, "root")
    assert user is not None and user.role == "admin" and not user.disabled
    assert admin.get("/admin/users").status_code == 200


def test_a_disabled_admin_does_not_count_as_the_admin_that_remains(app, qd, admin, make_user):
    make_user("second", "admin")
    post_form(admin, f"/admin/users/{_id(qd, 'second')}/disable")
    refused = post_form(admin, f"/admin/users/{_id(qd, 'root')}/role", {"role": "viewer"})
    assert refused.status_code == 409


def test_with_another_admin_an_admin_may_step_down_and_lands_on_the_overview(qd, admin, make_user):
    make_user("second", "admin")
    response = post_form(admin, f"/admin/users/{_id(qd, 'root')}/role", {"role": "viewer"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert admin.get("/admin/users").status_code == 403
    assert _user(qd, "root").role == "viewer"


def test_each_change_is_audited_naming_who_did_what_to_whom_without_secrets(
    qd, admin, make_user, caplog
):
    make_user("bob", "viewer")
    bob = _id(qd, "bob")
    caplog.set_level(logging.INFO, logger="quarterdeck.audit")
    post_form(admin, "/admin/users", {"name": "carol", "role": "viewer", "password": NEW_PASSWORD})
    post_form(admin, f"/admin/users/{bob}/role", {"role": "operator"})
    post_form(admin, f"/admin/users/{bob}/disable")
    post_form(admin, f"/admin/users/{bob}/enable")
    post_form(
        admin,
        f"/admin/users/{bob}/password",
        {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )
    post_form(admin, f"/admin/users/{bob}/delete", {"confirm": "bob"})
    page = post_form(admin, "/admin/tokens", {"name": "ci", "role": "viewer"}).get_data(
        as_text=True
    )
    with qd.store.session() as db:
        token_id = db.scalar(select(ApiToken.id))
    post_form(admin, f"/admin/tokens/{token_id}/revoke")
    lines = [r.getMessage() for r in caplog.records if r.name == "quarterdeck.audit"]
    assert lines == [
        "user add: root created carol with role viewer",
        "user set-role: root changed bob from viewer to operator",
        "user disable: root disabled bob (0 sessions ended)",
        "user enable: root enabled bob (0 sessions ended)",
        "user passwd: root set a new password for bob (0 sessions ended)",
        "user delete: root deleted bob (0 sessions ended)",
        "token create: root created token ci with role viewer",
        "token revoke: root revoked token ci",
    ]
    token = page.split('id="new-token">')[1].split("<")[0]
    assert all(NEW_PASSWORD not in line and token not in line for line in lines)


def test_every_change_to_users_sessions_or_tokens_tells_open_streams_to_check_again(
    app, qd, admin, make_user
):
    make_user("bob", "viewer")
    bob_client = signed_in_as(app, "bob")
    bob = _id(qd, "bob")
    token_page = post_form(admin, "/admin/tokens", {"name": "ci", "role": "viewer"})
    assert token_page.status_code == 200
    with qd.store.session() as db:
        token_id = db.scalar(select(ApiToken.id))
    steps = [
        lambda: post_form(admin, f"/admin/users/{bob}/role", {"role": "operator"}),
        lambda: post_form(bob_client, "/logout", page="/"),
        lambda: post_form(admin, f"/admin/users/{bob}/disable"),
        lambda: post_form(admin, f"/admin/users/{bob}/enable"),
        lambda: post_form(
            admin,
            f"/admin/users/{bob}/password",
            {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
        ),
        lambda: post_form(admin, f"/admin/users/{bob}/sessions/end"),
        lambda: post_form(admin, f"/admin/tokens/{token_id}/revoke"),
        lambda: post_form(admin, f"/admin/users/{bob}/delete", {"confirm": "bob"}),
    ]
    for step in steps:
        before = qd.feed.seq
        assert step().status_code == 302
        _, topics = qd.feed.wait(before, timeout=0)
        assert "auth" in topics


def test_management_forms_need_the_csrf_token(qd, admin, make_user):
    make_user("bob", "viewer")
    response = admin.post(f"/admin/users/{_id(qd, 'bob')}/disable")
    assert response.status_code == 400
    assert not _user(qd, "bob").disabled


def test_a_browser_name_shown_to_admins_is_escaped(app, qd, admin, make_user):
    make_user("bob", "viewer")
    signed_in_as(app, "bob", HTTP_USER_AGENT="<script>alert(1)</script>")
    page = admin.get(f"/admin/users/{_id(qd, 'bob')}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_the_users_page_links_to_each_person_and_counts_their_sessions(app, qd, admin):
    page = admin.get("/admin/users").get_data(as_text=True)
    assert f'href="/admin/users/{_id(qd, "root")}"' in page
    assert csrf_token_from(page)
