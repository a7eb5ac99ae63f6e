"""The Python API that shapes the double refuses what Consul would not hold, and stays atomic."""

from __future__ import annotations

import threading

import pytest

from demo.consul import ConsulDouble


@pytest.fixture
def offline() -> ConsulDouble:
    """A double that is not listening: its Python API works without a server."""
    double = ConsulDouble()
    double.register_node("node-a", "127.0.0.1")
    double.register_node("node-b", "127.0.0.1")
    return double


def test_every_node_gets_a_passing_serf_health_check(offline):
    check = offline.catalog.checks["node-a"]["serfHealth"]

    assert (check.status, check.service_id, check.name) == ("passing", "", "Serf Health Status")


def test_a_service_needs_a_registered_node(offline):
    with pytest.raises(KeyError, match="no node 'node-z'"):
        offline.register_service("node-z", "orders-1", "orders")


def test_a_service_id_cannot_be_reused_on_another_node(offline):
    offline.register_service("node-a", "orders-1", "orders")

    with pytest.raises(ValueError, match="already registered on node 'node-a'"):
        offline.register_service("node-b", "orders-1", "orders")


def test_an_ambiguous_check_id_needs_its_node(offline):
    with pytest.raises(ValueError, match="pass node="):
        offline.set_check("serfHealth", "critical")

    offline.set_check("serfHealth", "critical", "gone", node="node-b")

    assert offline.catalog.checks["node-b"]["serfHealth"].status == "critical"


def test_a_check_status_must_be_one_of_consuls(offline):
    offline.register_service("node-a", "orders-1", "orders", checks=[{"Name": "http"}])

    with pytest.raises(ValueError, match="check status"):
        offline.set_check("service:orders-1", "down")


def test_an_unchanged_write_does_not_advance_the_index(offline):
    offline.register_service("node-a", "orders-1", "orders", port=1, checks=[{"Output": "ok"}])
    index = offline.index

    offline.register_service("node-a", "orders-1", "orders", port=1, checks=[{"Output": "ok"}])
    offline.set_check("service:orders-1", "passing", "ok")

    assert offline.index == index


def test_re_registering_replaces_checks_but_keeps_maintenance(offline):
    offline.register_service("node-a", "orders-1", "orders", checks=[{"Name": "a"}, {"Name": "b"}])
    offline.enable_service_maintenance("orders-1", "deploy")

    offline.register_service("node-a", "orders-1", "orders", checks=[{"Name": "only"}])

    assert set(offline.catalog.checks["node-a"]) == {
        "serfHealth",
        "service:orders-1",
        "_service_maintenance:orders-1",
    }


def test_concurrent_cas_increments_over_http_never_lose_an_update(double, make_client):
    double.kv_put("counter", "0")
    clients = [make_client(double) for _ in range(6)]

    def increment(client, times: int) -> None:
        done = 0
        while done < times:
            _, item = client.kv.get("counter")
            if client.kv.put("counter", str(int(item["Value"]) + 1), cas=item["ModifyIndex"]):
                done += 1

    threads = [threading.Thread(target=increment, args=(client, 25)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert double.kv_get("counter") == b"150"
