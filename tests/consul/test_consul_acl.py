"""An unknown token is a configuration error; the configured token variable always wins."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from app.collection.runner import run_pass
from demo.consul import ConsulDouble
from tests.consul.conftest import TOKEN_ENV

ACL_TOKEN = "3f0c2d9e-6a51-4b7e-9d1c-quarterdeck"


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    """A running Consul double that enforces ACLs with one valid token."""
    with ConsulDouble(acl_token=ACL_TOKEN) as running:
        yield running


def consul_row(page: str) -> str:
    match = re.search(r'<tr data-source="consul"[^>]*>.*?</tr>', page, re.S)
    assert match, "the Sources page has no row for consul"
    return match.group(0)


def test_a_token_consul_does_not_know_is_a_configuration_error_on_the_api_and_the_sources_page(
    fleet, monkeypatch, consul_qd, make_collector, make_api
):
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")

    result = run_pass(consul_qd, make_collector(consul_qd))

    assert not result.ok and result.config_error
    api = make_api(consul_qd)
    source = api.source()
    assert source["status"] == "error" and source["error_kind"] == "config"
    assert "HTTP 403" in source["last_error"] and "ACL not found" in source["last_error"]
    assert source["last_success_at"] is None
    row = consul_row(api.page("/sources"))
    assert 'data-source-status="error"' in row and "configuration error" in row
    assert api.services() == {}


def test_no_token_reads_what_the_anonymous_token_may_and_says_the_catalog_was_filtered(
    fleet, consul_qd, make_collector, make_api
):
    # ACLs default to deny: the anonymous token sees an empty catalog, not a 403.
    result = run_pass(consul_qd, make_collector(consul_qd))

    assert result.ok, result.error
    api = make_api(consul_qd)
    source = api.source()
    assert source["status"] == "ok"
    reads = {w["read"]: w for w in source["warnings"]}
    assert reads["GET /v1/catalog/services"]["kind"] == "acl_filtered"
    assert reads["GET /v1/catalog/services"]["permission"] == "service:read"
    assert api.services() == {}
    page = api.page("/sources")
    assert 'data-source-warnings="consul"' in page
    assert "Filtered by ACLs" in page and "service:read" in page


def test_consul_http_token_in_the_environment_does_not_override_the_configured_variable(
    fleet, monkeypatch, consul_qd, make_collector
):
    # py-consul would send CONSUL_HTTP_TOKEN instead of the token it is given.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", ACL_TOKEN)
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")

    result = run_pass(consul_qd, make_collector(consul_qd))

    assert not result.ok and result.config_error
    assert "ACL not found" in result.error


def test_the_token_from_the_configured_variable_is_sent_whatever_consul_http_token_says(
    fleet, monkeypatch, consul_qd, make_collector, make_api
):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "not-the-token")
    monkeypatch.setenv(TOKEN_ENV, ACL_TOKEN)

    result = run_pass(consul_qd, make_collector(consul_qd))

    assert result.ok, result.error
    api = make_api(consul_qd)
    assert api.source()["status"] == "ok"
    assert api.services()["orders"]["instances"]["total"] == 3


def test_consul_http_token_is_used_when_it_is_the_configured_variable(
    fleet, monkeypatch, make_consul_qd, make_collector
):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", ACL_TOKEN)
    qd = make_consul_qd(token_env="CONSUL_HTTP_TOKEN")

    assert run_pass(qd, make_collector(qd)).ok


def test_credentials_in_the_consul_url_never_reach_the_error_shown(make_qd, make_api):
    from app.collection.runner import run_pass
    from app.config import ConsulConfig
    from collectors.consul import ConsulCollector

    qd = make_qd(consul=ConsulConfig(url="http://ops:hunter2@127.0.0.1:1", wait_s=1))
    collector = ConsulCollector.from_config(qd.config.consul, clock=qd.clock)
    try:
        result = run_pass(qd, collector)
    finally:
        collector.close()
    assert not result.ok and "127.0.0.1:1" in result.error
    assert "hunter2" not in result.error
    assert "hunter2" not in str(make_api(qd).source())
