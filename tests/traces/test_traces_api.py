"""GET /api/v1/traces and /api/v1/traces/<id>: filters over HTTP, 400s, 404, sign-in."""

from __future__ import annotations

import pytest

from tests.traces.trace_builder import T0, checkout, span, store_spans, trace_id

# The API's argument parsing and answers, once on each store.
pytestmark = pytest.mark.parametrize("app_store_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def api(app, qd, make_token):
    store_spans(qd.store.engine, checkout(1) + [
        span(2, 1, service="gateway", name="GET /health", duration_ms=1, at_ns=T0 + 10**9),
    ])  # fmt: skip
    token = make_token()
    client = app.test_client()

    def get(url: str):
        return client.get(url, headers={"Authorization": f"Bearer {token}"})

    return get


def test_the_api_needs_a_caller(app):
    response = app.test_client().get("/api/v1/traces")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert app.test_client().get(f"/api/v1/traces/{trace_id(1)}").status_code == 401


def test_search_answers_the_documented_fields(api):
    body = api("/api/v1/traces").get_json()
    assert [t["trace_id"] for t in body["traces"]] == [trace_id(2), trace_id(1)]
    assert set(body["traces"][1]) >= {
        "trace_id", "root_service", "root_operation", "start_at", "duration_ms", "span_count",
        "error", "services",
    }  # fmt: skip
    assert body["more"] is False


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("service=payments", [1]),
        ("operation=GET+/health", [2]),
        ("min_ms=100", [1]),
        ("max_ms=5", [2]),
        ("error=true", [1]),
        ("error=false", [2, 1]),
        ("tag=http.status_code:500", [1]),
        ("tag=deployment.environment:prod", [1]),
        ("service=gateway&min_ms=100&tag=http.method:GET", [1]),
        ("since=2025-11-24T16:00:00.5Z", [2]),
        ("until=2025-11-24T16:00:00.5%2B00:00", [1]),
        ("limit=1", [2]),
        ("limit=1&offset=1", [1]),
    ],
)
def test_each_filter_narrows_the_search(api, query, expected):
    response = api(f"/api/v1/traces?{query}")
    assert response.status_code == 200, response.get_json()
    assert [int(t["trace_id"], 16) for t in response.get_json()["traces"]] == expected


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("min_ms=-1", "min_ms"),
        ("min_ms=1.5", "min_ms"),
        ("max_ms=%C2%B2", "max_ms"),
        ("min_ms=10&max_ms=5", "max_ms"),
        ("limit=0", "limit"),
        ("limit=5001", "limit"),
        ("offset=x", "offset"),
        ("error=maybe", "error"),
        ("tag=nocolon", "tag"),
        ("tag=:value", "tag"),
        ("tag=a%22b:1", "tag"),
        ("since=yesterday", "since"),
        ("since=2025-11-24T16:00:00", "since"),
        ("since=2025-11-24T17:00:00Z&until=2025-11-24T16:00:00Z", "until"),
        ("lookback=3w", "lookback"),
        ("order=random", "order"),
        ("service=" + "x" * 300, "service"),
    ],
)
def test_bad_query_values_are_400_naming_the_parameter(api, query, names):
    response = api(f"/api/v1/traces?{query}")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request"
    assert names in error["message"]


def test_a_trace_comes_whole_with_parent_links_and_critical_path(api):
    body = api(f"/api/v1/traces/{trace_id(1)}").get_json()
    assert body["trace_id"] == trace_id(1)
    spans = {s["name"]: s for s in body["spans"]}
    assert set(spans) == {"GET /checkout", "create", "charge", "reserve"}
    assert spans["charge"]["parent_span_id"] == spans["create"]["span_id"]
    assert spans["charge"]["status"] == "error"
    assert spans["charge"]["attributes"] == {"http.status_code": 500, "retry": True}
    assert spans["GET /checkout"]["start_at"] == "2025-11-24T16:00:00.000000Z"
    assert spans["charge"]["duration_ms"] == 60.0
    assert [c["span_id"] for c in body["critical_path"]] == [
        spans[n]["span_id"] for n in ("GET /checkout", "create", "charge", "reserve")
    ]


def test_an_upper_case_trace_id_finds_the_trace(api):
    assert api(f"/api/v1/traces/{trace_id(1).upper()}").status_code == 200


def test_an_unknown_trace_is_404_and_a_malformed_id_400(api):
    missing = api(f"/api/v1/traces/{'f' * 32}")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    bad = api("/api/v1/traces/not-a-trace")
    assert bad.status_code == 400
    assert "32 hex digits" in bad.get_json()["error"]["message"]
