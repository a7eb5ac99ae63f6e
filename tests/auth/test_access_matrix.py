"""Every route family against every role: anonymous, viewer, operator, admin, and API tokens."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token_from

PAGES = ["/", "/services", "/sources"]
API = ["/api/v1/services", "/api/v1/sources", "/api/v1/openapi.json"]
ADMIN_PAGES = ["/admin/users"]
PUBLIC = ["/healthz", "/readyz", "/metrics", "/login"]


@pytest.mark.parametrize("path", PAGES + ADMIN_PAGES + ["/events"])
def test_anonymous_pages_redirect_to_sign_in_with_the_way_back(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", API)
def test_anonymous_api_calls_get_401_in_the_json_error_shape(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", PUBLIC)
def test_probes_metrics_and_sign_in_need_no_identity(app, path):
    assert app.test_client().get(path).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_role_sees_pages_and_reads_the_api(signed_in, role):
    client = signed_in(role)
    for path in PAGES + API:
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("role", "allowed"), [("viewer", False), ("operator", False), ("admin", True)]
)
def test_only_admins_reach_administration(signed_in, role, allowed):
    client = signed_in(role)
    response = client.get("/admin/users")
    assert response.status_code == (200 if allowed else 403)
    page = client.get("/").get_data(as_text=True)
    assert ('href="/admin/users"' in page) is allowed


@pytest.mark.parametrize(("role", "status"), [("viewer", 200), ("operator", 200), ("admin", 200)])
def test_api_tokens_carry_their_role(app, make_token, role, status):
    token = make_token(f"t-{role}", role)
    client = app.test_client()
    response = client.get("/api/v1/services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    denied = client.get("/admin/users", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == (200 if role == "admin" else 403)


def test_a_wrong_or_revoked_token_is_refused(app, make_token, signed_in):
    client = app.test_client()
    wrong = client.get("/api/v1/services", headers={"Authorization": "Bearer qd_nope"})
    assert wrong.status_code == 401 and wrong.json["error"]["message"]
    token = make_token("soon-gone", "viewer")
    admin = signed_in("admin")
    page = admin.get("/admin/users").get_data(as_text=True)
    from app.models import ApiToken

    qd = app.extensions["quarterdeck"]
    with qd.store.session() as db:
        token_id = db.query(ApiToken).filter_by(name="soon-gone").one().id
    admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf_token_from(page)})
    after = client.get("/api/v1/services", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401


def test_a_state_changing_form_without_csrf_token_is_refused(signed_in):
    admin = signed_in("admin")
    response = admin.post(
        "/admin/users", data={"name": "mallory", "role": "admin", "password": "x" * 20}
    )
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "mallory" not in page


def test_a_state_changing_form_with_its_csrf_token_works(signed_in):
    admin = signed_in("admin")
    token = csrf_token_from(admin.get("/admin/users").get_data(as_text=True))
    response = admin.post(
        "/admin/users",
        data={"name": "bob", "role": "operator", "password": "x" * 20, "csrf_token": token},
    )
    assert response.status_code == 302
    assert "bob" in admin.get("/admin/users").get_data(as_text=True)


def test_sign_out_needs_the_csrf_token_and_ends_the_session(signed_in):
    client = signed_in("viewer")
    assert client.post("/logout").status_code == 400
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/services").status_code == 302


def test_sign_in_form_is_csrf_protected(app, make_user):
    make_user("carol", "viewer")
    client = app.test_client()
    response = client.post(
        "/login", data={"username": "carol", "password": "correct horse battery"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_answer_even_with_a_stale_bearer_token(app, path):
    response = app.test_client().get(path, headers={"Authorization": "Bearer qd_revoked"})
    assert response.status_code == 200
