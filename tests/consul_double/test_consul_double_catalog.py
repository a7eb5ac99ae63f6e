"""Catalog and health endpoints answer in Consul's documented shapes, through py-consul."""

from __future__ import annotations

import consul
import pytest
import requests
from consul.exceptions import BadRequest

# Fields every record of each kind carries in Consul's documented responses.
NODE_KEYS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "ModifyIndex"}
SERVICE_KEYS = {"ID", "Service", "Tags", "Address", "Meta", "Port", "Weights", "Proxy", "Connect"}
CHECK_KEYS = {"CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceTags", "Type"}


def test_catalog_services_lists_every_service_with_its_tags(client, fleet):
    index, services = client.catalog.services()

    assert int(index) >= 1
    assert services["orders"] == ["api", "canary", "http"]
    assert services["consul"] == []
    assert "orders-sidecar-proxy" in services
    assert {"gateway", "payments", "inventory", "push"} <= set(services)


def test_health_service_entries_carry_node_service_and_checks(client, fleet):
    _, entries = client.health.service("orders")

    assert [entry["Service"]["ID"] for entry in entries] == ["orders-1", "orders-2", "orders-3"]
    entry = entries[0]
    assert set(entry["Node"]) >= NODE_KEYS
    assert set(entry["Service"]) >= SERVICE_KEYS
    assert entry["Service"]["Meta"]["version"] == "2.4.1"
    assert entry["Service"]["Weights"] == {"Passing": 1, "Warning": 1}
    assert entry["Node"]["Datacenter"] == "dc1"
    checks = {check["CheckID"]: check for check in entry["Checks"]}
    assert set(checks) == {"serfHealth", "service:orders-1"}
    assert all(set(check) >= CHECK_KEYS for check in checks.values())
    assert checks["serfHealth"]["ServiceID"] == ""
    assert checks["service:orders-1"]["ServiceTags"] == ["http", "api"]
    assert checks["service:orders-1"]["Output"].startswith("HTTP GET http://127.0.0.1:")


def test_catalog_service_rows_use_the_flat_service_prefixed_shape(client, fleet):
    _, rows = client.catalog.service("payments")

    assert [row["ServiceID"] for row in rows] == ["payments-1", "payments-2"]
    assert rows[0]["Node"] == "node-b"
    assert rows[0]["ServiceAddress"] == "127.0.0.1"
    assert rows[0]["ServicePort"] == 18120
    assert rows[0]["ServiceMeta"]["owner"] == "team-payments"
    assert rows[0]["NodeMeta"]["availability-zone"] == "az-b"


def test_an_unknown_service_is_an_empty_list_and_an_unknown_node_is_null(client, fleet):
    assert client.health.service("nope")[1] == []
    assert client.catalog.service("nope")[1] == []
    assert client.catalog.node("nope")[1] is None


def test_catalog_node_lists_the_services_on_the_node(client, fleet):
    _, body = client.catalog.node("node-c")

    assert body["Node"]["Node"] == "node-c"
    assert set(body["Services"]) == {
        "orders-3",
        "orders-3-sidecar-proxy",
        "payments-2",
        "payments-2-sidecar-proxy",
        "inventory-2",
        "inventory-2-sidecar-proxy",
        "push-3",
    }


def test_health_state_filters_checks_by_status(client, fleet, double):
    double.set_check("service:payments-2", "critical", "HTTP GET ...: 503 Service Unavailable")

    _, critical = client.health.state("critical")
    _, everything = client.health.state("any")

    assert [(c["CheckID"], c["Output"]) for c in critical] == [
        ("service:payments-2", "HTTP GET ...: 503 Service Unavailable")
    ]
    assert len(everything) > 20


def test_passing_drops_instances_with_any_non_passing_check(client, fleet, double):
    double.set_check("service:orders-2", "warning", "slow")
    double.set_check("serfHealth", "critical", "Agent not live or unreachable", node="node-c")

    _, passing = client.health.service("orders", passing=True)
    _, all_entries = client.health.service("orders")

    assert [entry["Service"]["ID"] for entry in passing] == ["orders-1"]
    assert len(all_entries) == 3


def test_a_node_check_change_shows_on_every_service_of_the_node(client, fleet, double):
    double.set_check("serfHealth", "critical", "Agent not live or unreachable", node="node-a")

    _, entries = client.health.service("inventory")

    serf = {e["Node"]["Node"]: e["Checks"][0]["Status"] for e in entries}
    assert serf == {"node-a": "critical", "node-c": "passing"}


def test_a_tag_filter_narrows_health_entries(client, fleet):
    _, entries = client.health.service("orders", filter_expr='Service.Tags contains "canary"')

    assert [entry["Service"]["ID"] for entry in entries] == ["orders-3"]
    assert entries[0]["Service"]["Meta"]["version"] == "2.5.0-rc.1"


def test_an_invalid_filter_is_a_bad_request(client, fleet):
    with pytest.raises(BadRequest, match="Failed to create boolean expression evaluator"):
        client.health.service("orders", filter_expr="Service.Tags contains")


def test_sidecar_proxies_carry_their_upstreams(client, fleet):
    _, entries = client.health.service("orders-sidecar-proxy")

    proxy = entries[0]["Service"]
    assert proxy["Kind"] == "connect-proxy"
    assert proxy["Proxy"]["DestinationServiceName"] == "orders"
    upstreams = proxy["Proxy"]["Upstreams"]
    assert [(u["DestinationType"], u["DestinationName"]) for u in upstreams] == [
        ("service", "payments"),
        ("service", "inventory"),
    ]
    assert all(u["LocalBindPort"] > 0 for u in upstreams)


def test_deregistering_a_node_removes_its_services_and_checks(client, fleet, double):
    double.deregister_node("node-c")

    _, entries = client.health.service("payments")
    _, nodes = client.catalog.nodes()

    assert [entry["Node"]["Node"] for entry in entries] == ["node-b"]
    assert "node-c" not in [node["Node"] for node in nodes]
    assert client.health.node("node-c")[1] == []


def test_agent_self_and_status_leader_describe_the_cluster(client):
    config = client.agent.self()["Config"]

    assert config["Datacenter"] == "dc1"
    assert config["NodeName"] == "consul-server-1"
    assert client.status.leader() == "127.0.0.1:8300"


def test_agent_services_lists_instances_by_id(client, fleet):
    services = client.agent.services()

    assert services["orders-1"]["Service"] == "orders"
    assert services["orders-1"]["Datacenter"] == "dc1"
    assert "Proxy" not in services["orders-1"]
    assert services["orders-1-sidecar-proxy"]["Proxy"]["DestinationServiceID"] == "orders-1"
    assert "consul" not in services


def test_another_datacenter_has_no_path(client, fleet):
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        client.health.service("orders", dc="dc2")


def test_unknown_paths_are_404_and_wrong_methods_are_405(double):
    missing = requests.get(f"{double.url}/v1/catalog/nothing-here", timeout=5)
    wrong = requests.delete(f"{double.url}/v1/catalog/services", timeout=5)

    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "OPTIONS,GET"
