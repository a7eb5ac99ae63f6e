"""Bad input gets a clear 4xx naming the field, quoting at most a short prefix, never a 500."""

from __future__ import annotations

import re

import pytest

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import StaticServiceConfig
from app.factory import create_app
from tests.conftest import csrf_token_from


def message_of(page: str) -> str:
    """The message paragraph of an error page."""
    match = re.search(r'<p class="error-page__message">(.*?)</p>', page, re.S)
    assert match, "not an error page"
    return match.group(1)


@pytest.fixture
def api(app, make_token):
    """A test client and the bearer header of a viewer token."""
    token = make_token("bad-input", "viewer")
    return app.test_client(), {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=²", "limit"),  # superscript two: str.isdigit() says yes, int() says no
        ("offset=١", "offset"),  # Arabic-Indic one: int() would even take it
        ("limit=𝟓", "limit"),  # mathematical bold five
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=0", "limit"),
        ("limit=5001", "limit"),
        ("offset=12 ", "offset"),
        ("offset=" + "9" * 5000, "offset"),
    ],
)
def test_a_query_number_that_is_not_ascii_digits_in_range_is_a_400_naming_it(api, query, field):
    client, auth = api
    response = client.get(f"/api/v1/services?{query}", headers=auth)
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith(f"{field} must be a whole number")
    assert len(error["message"]) < 150


@pytest.mark.parametrize("query", ["offset=١", "offset=²", "limit=²", "offset=-3"])
def test_the_services_page_answers_a_bad_query_number_with_a_400_page(signed_in, query):
    response = signed_in("viewer").get(f"/services?{query}")
    assert response.status_code == 400
    assert "must be a whole number" in message_of(response.get_data(as_text=True))


def test_the_api_lists_100_services_by_default_and_at_most_5000(make_qd, make_token):
    names = [f"svc-{i:03d}" for i in range(130)]
    qd = make_qd(
        static_services=tuple(
            StaticServiceConfig(name=name, instances=(f"10.0.0.1:{8000 + i}",))
            for i, name in enumerate(names)
        )
    )
    for source in configured_sources(qd.config, qd.clock):
        if source.collector:
            assert run_pass(qd, source.collector).ok
    client = create_app(qd=qd).test_client()
    auth = {"Authorization": f"Bearer {make_token('pager', 'viewer')}"}

    def listed(query: str) -> list[str]:
        response = client.get(f"/api/v1/services{query}", headers=auth)
        assert response.status_code == 200, response.json
        return [s["name"] for s in response.json["services"]]

    assert listed("") == names[:100]
    assert listed("?offset=100") == names[100:]
    assert listed("?limit=5000") == names
    assert listed("?limit=7&offset=0007") == names[7:14]
    assert listed("?limit=&offset=") == names[:100]  # empty means the default


def test_a_last_event_id_with_unicode_digits_restarts_the_stream_rather_than_failing(app, api):
    client, auth = api
    epoch = app.extensions["quarterdeck"].feed.epoch
    for seq in ("²", "١", "9" * 5000):
        headers = {**auth, "Last-Event-ID": f"{epoch}.{seq}"}
        response = client.get("/events", headers=headers, buffered=False)
        try:
            assert response.status_code == 200
            assert response.headers["Cache-Control"] == "no-cache"
        finally:
            response.close()


@pytest.mark.parametrize("path", ["/api/v1/services", "/api/v1/sources"])
def test_a_405_on_the_api_says_which_methods_are_allowed(api, path):
    client, auth = api
    response = client.post(path, headers=auth)
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["Allow"].split(",")} >= {"GET", "HEAD"}
    assert "POST" not in response.headers["Allow"]


@pytest.mark.parametrize(("method", "path"), [("post", "/services"), ("delete", "/login")])
def test_a_405_page_says_which_methods_are_allowed(signed_in, method, path):
    response = getattr(signed_in("viewer"), method)(path)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert method.upper() not in response.headers["Allow"]
    assert "<html" in response.get_data(as_text=True).lower()


def test_a_404_quotes_only_a_short_prefix_of_an_unknown_service_name(api, signed_in):
    client, auth = api
    name = "x" * 300 + "<script>alert(1)</script>"
    response = client.get(f"/api/v1/services/{name}", headers=auth)
    assert response.status_code == 404
    message = response.json["error"]["message"]
    assert "x" * 40 + "…" in message and "x" * 41 not in message and "script" not in message
    page = signed_in("viewer").get(f"/services/{name}")
    assert page.status_code == 404
    text = message_of(page.get_data(as_text=True))
    assert "x" * 40 + "…" in text and "x" * 41 not in text and "script" not in text


def test_a_bad_query_number_is_quoted_short(api):
    client, auth = api
    response = client.get("/api/v1/services?limit=" + "²" * 500, headers=auth)
    message = response.json["error"]["message"]
    assert response.status_code == 400
    assert "²" * 40 + "…" in message and "²" * 41 not in message


def test_a_form_error_quotes_only_a_short_prefix_of_what_was_sent(signed_in):
    admin = signed_in("admin")
    token = csrf_token_from(admin.get("/admin/users").get_data(as_text=True))
    role = "r" * 500
    response = admin.post(
        "/admin/users",
        data={"name": "dora", "role": role, "password": "x" * 20, "csrf_token": token},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "role must be one of" in page
    assert "r" * 40 + "…" in page and "r" * 41 not in page
