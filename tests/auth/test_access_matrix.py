"""Every route family against every caller: anonymous, viewer, operator, admin, and API tokens."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import ApiToken, User
from tests.conftest import csrf_token_from

ROLES = ("viewer", "operator", "admin")
CALLERS = ["anonymous", *ROLES, *(f"token-{r}" for r in ROLES)]
RANK = {"viewer": 0, "operator": 1, "admin": 2}

# family -> (least role, [(method, path)]); {bob} and {token} are filled in per test.
FAMILIES = {
    "pages": (
        "viewer",
        [("GET", "/"), ("GET", "/services"), ("GET", "/sources"), ("GET", "/actions")],
    ),
    "api": (
        "viewer",
        [("GET", "/api/v1/services"), ("GET", "/api/v1/sources"), ("GET", "/api/v1/openapi.json")],
    ),
    "live": ("viewer", [("GET", "/events")]),
    "admin pages": ("admin", [("GET", "/admin/users"), ("GET", "/admin/users/{bob}")]),
    "admin forms": (
        "admin",
        [
            ("POST", "/admin/users/{bob}/role"),
            ("POST", "/admin/users/{bob}/enable"),
            ("POST", "/admin/users/{bob}/sessions/end"),
            ("POST", "/admin/tokens/{token}/revoke"),
        ],
    ),
}
PUBLIC = ["/healthz", "/readyz", "/metrics", "/login"]


@pytest.fixture
def make_caller(app, make_user, make_token):
    """Return a factory: caller name -> (test client, extra headers)."""
    from tests.auth.conftest import signed_in_as

    def factory(caller: str):
        if caller == "anonymous":
            return app.test_client(), {}
        if caller.startswith("token-"):
            role = caller.removeprefix("token-")
            token = make_token(f"t-{role}", role)
            return app.test_client(), {"Authorization": f"Bearer {token}"}
        make_user(f"user-{caller}", caller)
        return signed_in_as(app, f"user-{caller}"), {}

    return factory


@pytest.fixture
def ids(qd, make_user, make_token) -> dict[str, int]:
    """A user and a token for the admin forms to act on."""
    make_user("bob", "viewer")
    make_token("spare", "viewer")
    with qd.store.session() as db:
        return {
            "bob": db.scalar(select(User.id).where(User.name == "bob")),
            "token": db.scalar(select(ApiToken.id).where(ApiToken.name == "spare")),
        }


def _call(client, headers, method: str, path: str):
    if method == "GET":
        return client.get(path, headers=headers, buffered=False)
    data = {"role": "viewer"}
    if "Authorization" not in headers:
        page = client.get("/")
        if page.status_code == 302:  # nobody signed in: the sign-in form has a token too
            page = client.get("/login")
        data["csrf_token"] = csrf_token_from(page.get_data(as_text=True))
    return client.post(path, data=data, headers=headers)


def _expected(caller: str, needed: str, method: str, path: str) -> set[int]:
    if caller == "anonymous":
        if method == "GET" and not path.startswith("/api/"):
            return {302}
        return {401}
    role = caller.removeprefix("token-")
    if RANK[role] < RANK[needed]:
        return {403}
    return {302} if method == "POST" else {200}


@pytest.mark.parametrize("caller", CALLERS)
def test_each_caller_gets_exactly_what_its_role_allows_in_every_route_family(
    make_caller, ids, caller
):
    client, headers = make_caller(caller)
    seen = []
    for family, (needed, routes) in FAMILIES.items():
        for method, template in routes:
            path = template.format(**ids)
            response = _call(client, headers, method, path)
            status = response.status_code
            response.close()
            seen.append((family, method, path, status))
            assert status in _expected(caller, needed, method, path), seen[-1]
            if status == 302 and caller == "anonymous":
                assert response.headers["Location"].startswith("/login?next=")
            if status in (401, 403) and path.startswith("/api/"):
                assert response.json["error"]["code"] in ("unauthorized", "forbidden")
    for path in PUBLIC:
        response = client.get(path, headers=headers)
        signed = path == "/login" and caller != "anonymous"
        assert response.status_code == (302 if signed else 200), (caller, path)
    assert {family for family, *_ in seen} == set(FAMILIES)


@pytest.mark.parametrize("role", ROLES)
def test_the_users_link_shows_only_to_admins(make_caller, role):
    page = make_caller(role)[0].get("/").get_data(as_text=True)
    assert ('href="/admin/users"' in page) is (role == "admin")


def test_anonymous_api_calls_get_401_with_a_bearer_challenge(app):
    response = app.test_client().get("/api/v1/services")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_or_revoked_token_is_refused_at_once(app, make_token, make_caller):
    client = app.test_client()
    wrong = client.get("/api/v1/services", headers={"Authorization": "Bearer qd_nope"})
    assert wrong.status_code == 401 and wrong.json["error"]["message"]
    token = make_token("soon-gone", "viewer")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/services", headers=headers).status_code == 200
    admin = make_caller("admin")[0]
    qd = app.extensions["quarterdeck"]
    with qd.store.session() as db:
        token_id = db.scalar(select(ApiToken.id).where(ApiToken.name == "soon-gone"))
    page = admin.get("/admin/users").get_data(as_text=True)
    admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf_token_from(page)})
    assert client.get("/api/v1/services", headers=headers).status_code == 401


def test_a_state_changing_form_without_csrf_token_is_refused(make_caller):
    admin = make_caller("admin")[0]
    response = admin.post(
        "/admin/users", data={"name": "mallory", "role": "admin", "password": "x" * 20}
    )
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert "mallory" not in admin.get("/admin/users").get_data(as_text=True)


def test_a_state_changing_form_with_its_csrf_token_works(make_caller):
    admin = make_caller("admin")[0]
    token = csrf_token_from(admin.get("/admin/users").get_data(as_text=True))
    response = admin.post(
        "/admin/users",
        data={"name": "bobby", "role": "operator", "password": "x" * 20, "csrf_token": token},
    )
    assert response.status_code == 302
    assert "bobby" in admin.get("/admin/users").get_data(as_text=True)


@pytest.mark.parametrize("role", ROLES)
def test_sign_out_needs_the_csrf_token_and_ends_the_session(make_caller, role):
    client = make_caller(role)[0]
    assert client.post("/logout").status_code == 400
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/services").status_code == 302


def test_sign_in_form_is_csrf_protected(app, make_user):
    make_user("carol", "viewer")
    response = app.test_client().post(
        "/login", data={"username": "carol", "password": "correct horse battery"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_answer_even_with_a_stale_bearer_token(app, path):
    response = app.test_client().get(path, headers={"Authorization": "Bearer qd_revoked"})
    assert response.status_code == 200
