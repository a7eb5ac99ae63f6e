"""Headers that keep answers out of caches and on TLS, and who may read the OpenAPI file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config import ServerConfig
from app.factory import HSTS_MAX_AGE_S, create_app

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "static" / "openapi.json"


def test_hsts_is_sent_when_cookies_are_secure(make_qd):
    client = create_app(qd=make_qd(server=ServerConfig(cookie_secure=True))).test_client()
    for path in ("/login", "/healthz", "/api/v1/services", "/static/css/quarterdeck.css"):
        with client.get(path) as response:
            assert response.headers["Strict-Transport-Security"] == f"max-age={HSTS_MAX_AGE_S}"


def test_no_hsts_on_plain_http(app):
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers


@pytest.mark.parametrize("path", ["/", "/services", "/sources", "/admin/users", "/services/nope"])
def test_signed_in_pages_are_never_stored(signed_in, path):
    response = signed_in("admin").get(path)
    assert response.status_code in (200, 404)
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "path", ["/api/v1/services", "/api/v1/sources", "/api/v1/openapi.json", "/api/v1/nope"]
)
def test_api_answers_are_never_stored(app, make_token, path):
    token = make_token("cache", "viewer")
    response = app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.headers["Cache-Control"] == "no-store"
    anonymous = app.test_client().get(path)
    assert anonymous.status_code in (401, 404) and anonymous.headers["Cache-Control"] == "no-store"


def test_static_files_may_be_cached_and_the_event_stream_keeps_its_no_cache(app, make_token):
    client = app.test_client()
    with client.get("/static/css/quarterdeck.css") as css:
        assert css.status_code == 200
        assert "no-store" not in css.headers.get("Cache-Control", "")
    token = make_token("stream", "viewer")
    stream = client.get("/events", headers={"Authorization": f"Bearer {token}"}, buffered=False)
    try:
        assert stream.headers["Cache-Control"] == "no-cache"
    finally:
        stream.close()


def test_the_openapi_document_needs_a_caller_at_both_of_its_addresses(app, make_token):
    client = app.test_client()
    for path in ("/api/v1/openapi.json", "/static/openapi.json"):
        anonymous = client.get(path, follow_redirects=True)
        assert anonymous.status_code == 401, path
        assert anonymous.json["error"]["code"] == "unauthorized"
        assert anonymous.request.path == "/api/v1/openapi.json"
    moved = client.get("/static/openapi.json")
    assert moved.status_code == 308 and moved.headers["Location"] == "/api/v1/openapi.json"
    auth = {"Authorization": f"Bearer {make_token('docs', 'viewer')}"}
    shipped = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    for path in ("/api/v1/openapi.json", "/static/openapi.json"):
        served = client.get(path, headers=auth, follow_redirects=True)
        assert served.status_code == 200 and served.json == shipped, path
