"""With an ACL token set, requests need it; py-consul maps the 403 to ACLPermissionDenied."""

from __future__ import annotations

from collections.abc import Iterator

import consul
import pytest
import requests

from demo.consul import ConsulDouble

TOKEN = "8f2d4c1e-0a5b-4c6d-9e7f-112233445566"


@pytest.fixture
def guarded() -> Iterator[ConsulDouble]:
    """A running double that requires TOKEN."""
    with ConsulDouble(acl_token=TOKEN) as running:
        running.register_node("node-a", "127.0.0.1")
        running.register_service("node-a", "orders-1", "orders", port=18110)
        yield running


def test_a_request_without_a_token_is_denied(guarded, make_client):
    anonymous = make_client(guarded)

    with pytest.raises(consul.ACLPermissionDenied, match="^Permission denied"):
        anonymous.health.service("orders")
    with pytest.raises(consul.ACLPermissionDenied):
        anonymous.kv.put("k", "v")


def test_the_anonymous_denial_names_the_missing_permission(guarded):
    response = requests.get(f"{guarded.url}/v1/health/service/orders", timeout=5)

    assert response.status_code == 403
    assert response.text.startswith(
        "Permission denied: anonymous token lacks permission 'service:read' on \"orders\""
    )


def test_an_unknown_token_is_denied_as_acl_not_found(guarded, make_client):
    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        make_client(guarded, token="not-the-token").catalog.services()


def test_the_token_is_accepted_from_header_bearer_or_query(guarded, make_client):
    url = f"{guarded.url}/v1/catalog/services"

    assert make_client(guarded, token=TOKEN).catalog.services()[1]["orders"] == []
    bearer = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    query = requests.get(url, params={"token": TOKEN}, timeout=5)
    assert (bearer.status_code, query.status_code) == (200, 200)


def test_status_leader_needs_no_token(guarded, make_client):
    assert make_client(guarded).status.leader() == "127.0.0.1:8300"


def test_consul_http_token_in_the_environment_overrides_the_client_token(
    guarded, make_client, monkeypatch
):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")

    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        make_client(guarded, token=TOKEN).catalog.services()
