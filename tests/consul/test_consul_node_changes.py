"""A node check, node maintenance, a node's address or its leaving changes every service on that
node, and only those."""

from __future__ import annotations

import pytest

from app.collection.runner import run_pass

NODE_C = {
    "orders": "orders-3",
    "payments": "payments-2",
    "inventory": "inventory-2",
    "push": "push-3",
}
NODE_B = {"gateway": "gateway-2", "orders": "orders-2", "payments": "payments-1", "push": "push-2"}


@pytest.fixture
def collected(fleet, consul_qd, make_collector, make_api):
    """A collector after its full pass, and the API of the same store."""
    collector = make_collector(consul_qd)
    assert run_pass(consul_qd, collector).ok
    return consul_qd, collector, make_api(consul_qd)


def test_a_failing_node_check_makes_every_service_on_the_node_critical(
    double, collected, collect_until
):
    qd, collector, api = collected

    double.set_check("serfHealth", "critical", "Agent not live or unreachable", node="node-c")
    collect_until(
        qd, collector, lambda: all(api.service(s)["health"] == "critical" for s in NODE_C)
    )

    for service, instance_id in NODE_C.items():
        instance = api.instance(service, instance_id)
        assert instance["node"] == "node-c" and instance["health"] == "critical"
        serf = {c["id"]: c for c in instance["checks"]}["serfHealth"]
        assert (serf["kind"], serf["status"]) == ("node", "critical")
        assert serf["output"] == "Agent not live or unreachable"
        transitions = api.service(service)["transitions"]
        assert [(t["instance"], t["from"], t["to"], t["check"]) for t in transitions] == [
            (instance_id, "passing", "critical", "serfHealth")
        ]
        assert api.services()[service]["instances"]["critical"] == 1
    sidecar = api.instance("orders-sidecar-proxy", "orders-3-sidecar-proxy")
    assert sidecar["health"] == "critical"
    gateway = api.service("gateway")
    assert gateway["health"] == "passing" and gateway["transitions"] == []


def test_node_maintenance_puts_every_instance_on_the_node_in_maintenance_with_the_reason(
    double, collected, collect_until
):
    qd, collector, api = collected

    double.enable_node_maintenance("node-b", "kernel upgrade")
    collect_until(
        qd,
        collector,
        lambda: all(api.services()[s]["instances"]["maintenance"] == 1 for s in NODE_B),
    )

    for service, instance_id in NODE_B.items():
        instance = api.instance(service, instance_id)
        assert instance["health"] == "maintenance" and instance["maintenance"] is True
        assert instance["maintenance_reason"] == "kernel upgrade"
        counts = api.services()[service]["instances"]
        assert counts["critical"] == 0 and counts["passing"] == counts["total"] - 1
    assert api.instance("inventory", "inventory-1")["maintenance"] is False

    double.disable_node_maintenance("node-b")
    collect_until(
        qd,
        collector,
        lambda: all(api.services()[s]["instances"]["maintenance"] == 0 for s in NODE_B),
    )
    transitions = api.service("gateway")["transitions"]
    assert [(t["instance"], t["from"], t["to"]) for t in reversed(transitions)] == [
        ("gateway-2", "passing", "maintenance"),
        ("gateway-2", "maintenance", "passing"),
    ]


@pytest.fixture
def ledger(double) -> None:
    """ledger-1 takes its address from its node (no Service.Address); ledger-2 has its own."""
    double.register_node("node-d", "10.9.8.7", {"rack": "r1"})
    double.register_service(
        "node-d",
        "ledger-1",
        "ledger",
        port=7000,
        checks=[{"CheckID": "ledger-1-http", "Name": "ledger http", "Status": "passing"}],
    )
    double.register_service(
        "node-d",
        "ledger-2",
        "ledger",
        address="10.9.8.80",
        port=7001,
        checks=[{"CheckID": "ledger-2-http", "Name": "ledger http", "Status": "passing"}],
    )


def test_a_node_address_change_reaches_the_instances_that_take_their_address_from_it(
    double, ledger, collected, collect_until
):
    qd, collector, api = collected
    assert api.instance("ledger", "ledger-1")["address"] == "10.9.8.7"

    double.register_node("node-d", "10.9.8.99", {"rack": "r1"})
    collect_until(
        qd, collector, lambda: api.instance("ledger", "ledger-1")["address"] == "10.9.8.99"
    )

    assert api.instance("ledger", "ledger-2")["address"] == "10.9.8.80"


def test_a_node_that_leaves_takes_its_instances_with_it(double, ledger, collected, collect_until):
    qd, collector, api = collected
    assert api.services()["ledger"]["instances"]["total"] == 2
    orders_before = api.services()["orders"]["instances"]["total"]

    double.deregister_node("node-d")
    collect_until(qd, collector, lambda: "ledger" in api.services("?health=gone"))

    transitions = api.service("ledger")["transitions"]
    assert {(t["instance"], t["to"]) for t in transitions} == {
        ("ledger-1", "gone"),
        ("ledger-2", "gone"),
    }
    assert api.services()["orders"]["instances"]["total"] == orders_before


def test_a_node_leaving_removes_only_its_instances_from_services_elsewhere(
    double, collected, collect_until
):
    qd, collector, api = collected

    double.deregister_node("node-c")
    collect_until(qd, collector, lambda: api.services()["orders"]["instances"]["total"] == 2)

    live = {i["id"] for i in api.service("orders")["instances"] if i["health"] != "gone"}
    assert live == {"orders-1", "orders-2"}
    transitions = api.service("orders")["transitions"]
    assert [(t["instance"], t["to"]) for t in transitions] == [("orders-3", "gone")]


def test_a_node_meta_change_reaches_every_instance_on_the_node(
    double, ledger, collected, collect_until
):
    qd, collector, api = collected
    # Consul adds its own keys (consul-version, consul-network-segment) to every node.
    assert api.instance("ledger", "ledger-1")["node_meta"]["rack"] == "r1"

    double.register_node("node-d", "10.9.8.7", {"rack": "r9", "zone": "eu-west-1b"})
    collect_until(
        qd, collector, lambda: api.instance("ledger", "ledger-2")["node_meta"].get("rack") == "r9"
    )

    for instance_id in ("ledger-1", "ledger-2"):
        meta = api.instance("ledger", instance_id)["node_meta"]
        assert (meta["rack"], meta["zone"]) == ("r9", "eu-west-1b")
    page = api.page("/services/ledger")
    assert "zone=eu-west-1b" in page and "consul-version=" not in page
