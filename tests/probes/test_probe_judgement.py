"""One probe run against a real local server: each way to fail names its reason."""

from __future__ import annotations

import json

from app.config import ProbeConfig
from collectors.probes import parse_json_path, run_probe
from tests.fixtures.processes import free_port


def probe(url: str, **keys) -> ProbeConfig:
    return ProbeConfig(name="checkout", service="orders", url=url, **keys)


def test_a_healthy_endpoint_passes_with_its_status_and_latency(endpoint):
    result = run_probe(
        probe(
            f"{endpoint.url}/health",
            expect_body="ok",
            expect_json={"path": "$.status", "equals": "ok"},
        ),
        {},
    )
    assert result.ok, result.detail
    assert result.status == 200
    assert result.latency_ms >= 0
    assert result.detail.startswith("status 200")


def test_a_500_fails_naming_the_status(endpoint):
    endpoint.health = (500, "text/plain", "boom")
    result = run_probe(probe(f"{endpoint.url}/health"), {})
    assert not result.ok
    assert result.status == 500
    assert result.detail == "status 500, expected 200"


def test_a_wrong_body_fails_naming_the_missing_text(endpoint):
    endpoint.health = (200, "text/plain", "all good")
    result = run_probe(probe(f"{endpoint.url}/health", expect_body="ok"), {})
    assert not result.ok
    assert result.detail == 'body did not contain "ok"'


def test_a_wrong_json_value_fails_saying_what_it_was(endpoint):
    endpoint.health = (200, "application/json", json.dumps({"status": "degraded"}))
    result = run_probe(
        probe(f"{endpoint.url}/health", expect_json={"path": "$.status", "equals": "ok"}), {}
    )
    assert not result.ok
    assert result.detail == '$.status was "degraded", expected "ok"'


def test_a_missing_json_path_and_a_non_json_body_each_say_so(endpoint):
    endpoint.health = (200, "application/json", json.dumps({"checks": [{"db": "up"}]}))
    missing = run_probe(
        probe(f"{endpoint.url}/health", expect_json={"path": "checks.0.cache", "equals": "up"}), {}
    )
    assert missing.detail == "checks.0.cache is missing from the body"
    found = run_probe(
        probe(f"{endpoint.url}/health", expect_json={"path": "checks.0.db", "equals": "up"}), {}
    )
    assert found.ok, found.detail
    endpoint.health = (200, "text/plain", "ok")
    not_json = run_probe(
        probe(f"{endpoint.url}/health", expect_json={"path": "$.status", "equals": "ok"}), {}
    )
    assert not_json.detail == "body is not JSON, so $.status cannot be read"


def test_a_boolean_expectation_is_not_met_by_the_number_one(endpoint):
    endpoint.health = (200, "application/json", json.dumps({"ready": 1}))
    result = run_probe(
        probe(f"{endpoint.url}/health", expect_json={"path": "$.ready", "equals": True}), {}
    )
    assert result.detail == "$.ready was 1, expected true"


def test_a_slow_answer_times_out(endpoint):
    result = run_probe(probe(f"{endpoint.url}/slow?s=3", timeout_ms=500), {})
    assert not result.ok
    assert result.status is None
    assert result.detail == "timeout after 500 ms"
    assert result.latency_ms < 2500  # the hard timeout ended it, not the server


def test_an_answer_over_the_latency_budget_fails_with_both_figures(endpoint):
    result = run_probe(
        probe(f"{endpoint.url}/slow?s=0.3", latency_budget_ms=100, expect_body="ok"), {}
    )
    assert not result.ok
    assert result.status == 200
    assert result.detail.endswith("ms over the 100 ms budget")
    assert int(result.detail.split(" ms")[0].replace(",", "")) >= 300


def test_a_closed_port_is_connection_refused():
    result = run_probe(probe(f"http://127.0.0.1:{free_port()}/health"), {})
    assert not result.ok
    assert result.detail == "connection refused"


def test_redirects_are_not_followed_unless_configured(endpoint):
    plain = run_probe(probe(f"{endpoint.url}/moved"), {})
    assert plain.detail == "status 302, expected 200"
    followed = run_probe(
        probe(f"{endpoint.url}/moved", follow_redirects=True, expect_body="ok"), {}
    )
    assert followed.ok, followed.detail


def test_headers_are_sent_and_secret_ones_come_from_the_environment(endpoint):
    result = run_probe(
        probe(
            f"{endpoint.url}/health",
            headers={"X-Probe": "quarterdeck"},
            headers_env={"Authorization": "CHECKOUT_TOKEN"},
        ),
        {"CHECKOUT_TOKEN": "Bearer s3cret-value"},
    )
    assert result.ok, result.detail
    seen = endpoint.seen_headers[-1]
    assert seen["Authorization"] == "Bearer s3cret-value"
    assert seen["X-Probe"] == "quarterdeck"
    assert "s3cret" not in result.detail


def test_an_unset_secret_variable_fails_the_probe_naming_the_variable(endpoint):
    result = run_probe(
        probe(f"{endpoint.url}/health", headers_env={"Authorization": "CHECKOUT_TOKEN"}), {}
    )
    assert not result.ok
    assert result.detail == "header secret variable CHECKOUT_TOKEN is not set"
    assert endpoint.seen_headers == []


def test_a_long_reason_is_bounded(endpoint):
    endpoint.health = (200, "application/json", json.dumps({"status": "x" * 5000}))
    result = run_probe(
        probe(f"{endpoint.url}/health", expect_json={"path": "$.status", "equals": "ok"}), {}
    )
    assert len(result.detail) <= 300


def test_json_paths_read_both_forms():
    assert parse_json_path('$.a.b[0]["c d"]') == ("a", "b", 0, "c d")
    assert parse_json_path("a.b.0") == ("a", "b", 0)
