"""ACLs as Consul >= 1.13 enforces them: reads are filtered and say so; only unknown tokens fail.

A known token without read permission gets 200 with the entries it may not read left out and
`X-Consul-Results-Filtered-By-ACLs: true`; only an unknown secret is 403 "ACL not found"; writes
and single-key reads without permission are 403 "Permission denied: ...".
"""

from __future__ import annotations

from collections.abc import Iterator

import consul
import pytest
import requests

from demo.consul import ConsulDouble

TOKEN = "8f2d4c1e-0a5b-4c6d-9e7f-112233445566"
FILTERED = "X-Consul-Results-Filtered-By-ACLs"
NODES_READ = {"node_prefix": {"": "read"}}


@pytest.fixture
def guarded() -> Iterator[ConsulDouble]:
    """A running double with ACLs on (default deny), TOKEN its management token."""
    with ConsulDouble(acl_token=TOKEN) as running:
        running.register_node("node-a", "127.0.0.1")
        running.register_node("node-b", "127.0.0.2")
        running.register_service("node-a", "orders-1", "orders", port=18110, checks=[{}])
        running.register_service("node-b", "payments-1", "payments", port=18120, checks=[{}])
        running.kv_put("app/orders/limit", "10")
        running.kv_put("app/payments/secret", "s3")
        yield running


def get(double: ConsulDouble, path: str, token: str | None = None, **params) -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    return requests.get(f"{double.url}{path}", headers=headers, params=params, timeout=5)


def orders_reader(double: ConsulDouble) -> str:
    return double.create_acl_token(rules={"service": {"orders": "read"}, **NODES_READ})


def test_the_management_token_reads_everything_unfiltered(guarded):
    for path in ("/v1/catalog/services", "/v1/health/state/any", "/v1/kv/?recurse"):
        response = get(guarded, path, TOKEN)

        assert response.status_code == 200
        assert FILTERED not in response.headers
    assert set(get(guarded, "/v1/catalog/services", TOKEN).json()) == {
        "consul",
        "orders",
        "payments",
    }


def test_a_request_without_a_token_reads_an_empty_filtered_answer(guarded, make_client):
    response = get(guarded, "/v1/health/service/orders")

    assert response.status_code == 200
    assert response.json() == []
    assert response.headers[FILTERED] == "true"
    assert make_client(guarded).catalog.services()[1] == {}
    assert make_client(guarded).health.state("any")[1] == []


def test_a_token_with_no_policies_gets_200_and_empty_answers_everywhere(guarded, make_client):
    nothing = guarded.create_acl_token()
    client = make_client(guarded, token=nothing)

    assert client.catalog.services()[1] == {}
    assert client.catalog.nodes()[1] == []
    assert client.catalog.service("orders")[1] == []
    assert client.health.service("orders")[1] == []
    assert client.health.checks("orders")[1] == []
    assert client.health.node("node-a")[1] == []
    assert client.catalog.node("node-a")[1] is None
    assert client.kv.get("app/", recurse=True)[1] is None
    assert client.kv.get("app/", keys=True)[1] is None
    for path in ("/v1/catalog/services", "/v1/catalog/nodes", "/v1/catalog/node/node-a"):
        assert get(guarded, path, nothing).headers[FILTERED] == "true"


def test_the_header_is_absent_when_nothing_was_left_out(guarded):
    nothing = guarded.create_acl_token()

    # No instance of "unknown" exists, so none was filtered: Consul omits the header.
    response = get(guarded, "/v1/health/service/unknown", nothing)

    assert response.status_code == 200
    assert FILTERED not in response.headers


def test_a_token_reads_only_the_services_its_policy_names(guarded, make_client):
    reader = orders_reader(guarded)
    client = make_client(guarded, token=reader)

    assert client.catalog.services()[1] == {"orders": []}
    assert [e["Service"]["ID"] for e in client.health.service("orders")[1]] == ["orders-1"]
    assert client.health.service("payments")[1] == []
    assert FILTERED not in get(guarded, "/v1/health/service/orders", reader).headers
    assert get(guarded, "/v1/health/service/payments", reader).headers[FILTERED] == "true"
    assert get(guarded, "/v1/catalog/services", reader).headers[FILTERED] == "true"


def test_service_read_without_node_read_still_hides_the_instances(guarded, make_client):
    # aclFilter.filterCheckServiceNodes needs node:read on the instance's node as well.
    services_only = guarded.create_acl_token(rules={"service_prefix": {"": "read"}})
    client = make_client(guarded, token=services_only)

    assert set(client.catalog.services()[1]) == {"consul", "orders", "payments"}
    assert client.health.service("orders")[1] == []
    assert client.catalog.nodes()[1] == []


def test_health_state_keeps_node_checks_by_node_and_service_checks_by_service(guarded):
    reader = orders_reader(guarded)

    checks = get(guarded, "/v1/health/state/any", reader).json()

    assert {(c["Node"], c["CheckID"]) for c in checks} == {
        ("consul-server-1", "serfHealth"),
        ("node-a", "serfHealth"),
        ("node-b", "serfHealth"),
        ("node-a", "service:orders-1"),
    }


def test_catalog_node_without_node_read_is_null_and_filtered(guarded):
    services_only = guarded.create_acl_token(rules={"service_prefix": {"": "read"}})

    response = get(guarded, "/v1/catalog/node/node-a", services_only)

    assert response.json() is None
    assert response.headers[FILTERED] == "true"


def test_catalog_node_leaves_out_the_services_the_token_may_not_read(guarded):
    payments = guarded.create_acl_token(rules={"service": {"payments": "read"}, **NODES_READ})

    response = get(guarded, "/v1/catalog/node/node-a", payments)

    assert response.json()["Node"]["Node"] == "node-a"
    assert response.json()["Services"] == {}
    assert response.headers[FILTERED] == "true"


def test_an_exact_rule_beats_the_longest_prefix_and_deny_beats_read(guarded, make_client):
    guarded.register_service("node-a", "orders-admin-1", "orders-admin", port=18111)
    token = guarded.create_acl_token(
        rules={
            "service_prefix": {"": "read", "orders-": "deny"},
            "service": {"orders-admin": "read", "payments": "deny"},
            **NODES_READ,
        }
    )

    names = set(make_client(guarded, token=token).catalog.services()[1])

    assert names == {"consul", "orders", "orders-admin"}


def test_policies_of_one_token_merge_with_deny_first(guarded, make_client):
    guarded.create_acl_policy("read-all", {"service_prefix": {"": "read"}, **NODES_READ})
    guarded.create_acl_policy("no-payments", {"service": {"payments": {"policy": "deny"}}})
    token = guarded.create_acl_token(policies=["read-all", "no-payments"])

    assert set(make_client(guarded, token=token).catalog.services()[1]) == {"consul", "orders"}


def test_kv_lists_leave_out_keys_the_token_may_not_read(guarded, make_client):
    token = guarded.create_acl_token(rules={"key_prefix": {"app/orders/": "read"}})
    client = make_client(guarded, token=token)

    assert [item["Key"] for item in client.kv.get("app/", recurse=True)[1]] == ["app/orders/limit"]
    assert client.kv.get("app/", keys=True, separator="/")[1] == ["app/orders/"]
    assert get(guarded, "/v1/kv/app/", token, recurse="").headers[FILTERED] == "true"
    assert get(guarded, "/v1/kv/app/", token, keys="").headers[FILTERED] == "true"


def test_a_single_key_read_without_permission_is_denied(guarded):
    token = guarded.create_acl_token(rules={"key_prefix": {"app/orders/": "read"}})
    accessor = guarded.acl_accessor_id(token)

    response = get(guarded, "/v1/kv/app/payments/secret", token)

    # kvs_endpoint.go Get: KeyReadAllowed, not a filter.
    assert response.status_code == 403
    assert response.text == (
        f"Permission denied: token with AccessorID '{accessor}' lacks permission "
        "'key:read' on \"app/payments/secret\""
    )


def test_a_write_without_permission_is_denied_naming_the_permission(guarded, make_client):
    reader = orders_reader(guarded)

    with pytest.raises(consul.ACLPermissionDenied, match="lacks permission 'key:write'"):
        make_client(guarded, token=reader).kv.put("app/orders/limit", "11")
    with pytest.raises(consul.ACLPermissionDenied, match="'service:write' on \"orders\""):
        make_client(guarded, token=reader).agent.service.maintenance("orders-1", True)
    response = requests.put(f"{guarded.url}/v1/kv/k", data=b"v", timeout=5)
    assert response.status_code == 403
    assert response.text.startswith(
        "Permission denied: anonymous token lacks permission 'key:write' on \"k\""
    )


def test_a_write_with_permission_succeeds(guarded, make_client):
    writer = guarded.create_acl_token(rules={"key_prefix": {"app/": "write"}})

    assert make_client(guarded, token=writer).kv.put("app/orders/limit", "11")
    assert guarded.kv_get("app/orders/limit") == b"11"


def test_an_unknown_token_is_denied_as_acl_not_found(guarded, make_client):
    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        make_client(guarded, token="not-the-token").catalog.services()


def test_a_deleted_token_becomes_unknown(guarded, make_client):
    reader = orders_reader(guarded)
    guarded.delete_acl_token(reader)

    response = get(guarded, "/v1/catalog/services", reader)

    assert (response.status_code, response.text) == (403, "ACL not found")


def test_the_anonymous_token_can_be_given_policies(guarded, make_client):
    guarded.create_acl_token("anonymous", rules={"service": {"orders": "read"}, **NODES_READ})

    assert make_client(guarded).catalog.services()[1] == {"orders": []}


def test_default_policy_allow_lets_unmatched_reads_through(make_client):
    with ConsulDouble(acl_default_policy="allow") as double:
        double.register_node("node-a", "127.0.0.1")
        double.register_service("node-a", "orders-1", "orders")
        double.register_service("node-a", "payments-1", "payments")
        token = double.create_acl_token(rules={"service": {"payments": "deny"}})

        names = set(make_client(double, token=token).catalog.services()[1])

    assert names == {"consul", "orders"}


def test_the_bexpr_filter_runs_on_what_the_acl_filter_left(guarded):
    reader = orders_reader(guarded)

    response = get(guarded, "/v1/health/state/any", reader, filter='ServiceName == "payments"')

    assert response.json() == []
    assert response.headers[FILTERED] == "true"


def test_agent_services_and_sessions_are_filtered_too(guarded):
    reader = orders_reader(guarded)
    guarded.create_session(node="node-a", name="lock")

    services = get(guarded, "/v1/agent/services", reader)
    sessions = get(guarded, "/v1/session/list", reader)

    assert list(services.json()) == ["orders-1"]
    assert services.headers[FILTERED] == "true"
    assert sessions.json() == []
    assert sessions.headers[FILTERED] == "true"


def test_token_self_names_the_accessor_and_policies(guarded, make_client):
    guarded.create_acl_policy("orders-read", {"service": {"orders": "read"}})
    token = guarded.create_acl_token(policies=["orders-read"], description="quarterdeck")

    body = make_client(guarded, token=token).acl.token.read_self()

    assert body["AccessorID"] == guarded.acl_accessor_id(token)
    assert body["Description"] == "quarterdeck"
    assert [policy["Name"] for policy in body["Policies"]] == ["orders-read"]


def test_the_token_is_accepted_from_header_bearer_or_query(guarded, make_client):
    url = f"{guarded.url}/v1/catalog/services"

    assert make_client(guarded, token=TOKEN).catalog.services()[1]["orders"] == []
    bearer = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    query = requests.get(url, params={"token": TOKEN}, timeout=5)
    assert "orders" in bearer.json() and "orders" in query.json()


def test_status_leader_needs_no_token(guarded, make_client):
    assert make_client(guarded, token="not-the-token").status.leader() == "127.0.0.1:8300"


def test_bad_rules_are_refused_naming_the_rule(guarded):
    with pytest.raises(ValueError, match="policy must be one of"):
        guarded.create_acl_policy("bad", {"service": {"orders": "admin"}})
    with pytest.raises(ValueError, match="unknown ACL rule resource 'services'"):
        guarded.create_acl_policy("bad", {"services": {"orders": "read"}})
    with pytest.raises(ValueError, match="no ACL policy named 'missing'"):
        guarded.create_acl_token(policies=["missing"])


def test_consul_http_token_in_the_environment_overrides_the_client_token(
    guarded, make_client, monkeypatch
):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")

    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        make_client(guarded, token=TOKEN).catalog.services()


def test_session_writes_need_session_write_on_the_sessions_node(guarded, make_client):
    node_a = guarded.create_acl_token(rules={"session": {"node-a": "write"}, **NODES_READ})
    client = make_client(guarded, token=node_a)

    session_id = client.session.create(node="node-a", name="lock")
    with pytest.raises(consul.ACLPermissionDenied, match="'session:write' on \"node-b\""):
        client.session.create(node="node-b", name="lock")
    other = guarded.create_session(node="node-b")
    with pytest.raises(consul.ACLPermissionDenied, match="'session:write' on \"node-b\""):
        client.session.destroy(other)
    assert client.session.destroy(session_id)
