"""Blocking queries wait on their own endpoint's index, wake on its changes, never go backwards."""

from __future__ import annotations

import time

import pytest
import requests
from consul.exceptions import BadRequest


def _timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started, time.monotonic()


def test_a_blocking_query_waits_for_the_wait_time_when_nothing_changes(client, fleet):
    index, _ = client.health.service("orders")

    (new_index, entries), elapsed, _ = _timed(
        lambda: client.health.service("orders", index=index, wait="1s")
    )

    # Consul adds up to wait/16 of jitter; the upper bound only says it did not hang.
    assert 1.0 <= elapsed < 5
    assert new_index == index
    assert len(entries) == 3


def test_a_blocking_query_returns_promptly_when_the_watched_service_changes(
    client, fleet, double, later
):
    index, _ = client.health.service("orders")

    with later(0.3, lambda: double.set_check("service:orders-2", "critical", "boom")) as change:
        (new_index, entries), _, returned_at = _timed(
            lambda: client.health.service("orders", index=index, wait="30s")
        )

    # A 30 s wait that ended with the change in it was woken by the change.
    assert returned_at >= change.ran_at
    assert int(new_index) > int(index)
    statuses = {e["Service"]["ID"]: e["Checks"][1]["Status"] for e in entries}
    assert statuses["orders-2"] == "critical"


def test_a_change_to_another_service_does_not_end_the_wait(client, fleet, double, later):
    index, _ = client.health.service("orders")

    with later(0.2, lambda: double.set_check("service:payments-1", "critical", "boom")):
        (new_index, _), elapsed, _ = _timed(
            lambda: client.health.service("orders", index=index, wait="1s")
        )

    assert elapsed >= 1.0
    assert new_index == index


def test_catalog_services_does_not_wake_on_a_check_flap(client, fleet, double, later):
    index, _ = client.catalog.services()

    with later(0.1, lambda: double.set_check("service:orders-1", "warning", "slow")):
        (new_index, _), elapsed, _ = _timed(
            lambda: client.catalog.services(index=index, wait="500ms")
        )

    assert elapsed >= 0.5
    assert new_index == index


def test_the_service_index_never_goes_backwards_when_an_instance_leaves(client, fleet, double):
    # orders-3's check is the newest change to "orders"; removing it must not lower the index.
    double.set_check("service:orders-3", "warning", "slow")
    before, _ = client.health.service("orders")

    double.deregister_service("orders-3")
    after, entries = client.health.service("orders")
    double.deregister_service("orders-1")
    double.deregister_service("orders-2")
    extinct, nothing = client.health.service("orders")

    assert int(before) < int(after) < int(extinct)
    assert len(entries) == 2
    assert nothing == []


def test_a_watch_on_a_missing_service_wakes_when_it_is_registered(client, fleet, double, later):
    index, _ = client.health.service("billing")

    def register() -> None:
        double.register_service("node-a", "billing-1", "billing", port=18300)

    with later(0.2, register) as change:
        (new_index, entries), _, returned_at = _timed(
            lambda: client.health.service("billing", index=index, wait="30s")
        )

    # A 30 s wait that ended with the change in it was woken by the change.
    assert returned_at >= change.ran_at
    assert int(new_index) > int(index)
    assert [entry["Service"]["ID"] for entry in entries] == ["billing-1"]


def test_a_kv_watch_wakes_when_its_key_is_written(client, double, later):
    index, _ = client.kv.get("quarterdeck/degrade/orders")

    with later(0.2, lambda: double.kv_put("quarterdeck/degrade/orders", '{"level":"x"}')) as change:
        (new_index, item), _, returned_at = _timed(
            lambda: client.kv.get("quarterdeck/degrade/orders", index=index, wait="30s")
        )

    # A 30 s wait that ended with the change in it was woken by the change.
    assert returned_at >= change.ran_at
    assert item["ModifyIndex"] == int(new_index)


def test_a_kv_watch_on_an_existing_key_ignores_other_keys(client, double, later):
    double.kv_put("quarterdeck/releases/orders", "v1")
    index, _ = client.kv.get("quarterdeck/releases/orders")

    with later(0.1, lambda: double.kv_put("quarterdeck/releases/payments", "v9")):
        (new_index, _), elapsed, _ = _timed(
            lambda: client.kv.get("quarterdeck/releases/orders", index=index, wait="500ms")
        )

    assert elapsed >= 0.5
    assert new_index == index


def test_agent_services_blocks_on_the_content_hash(double, fleet, later):
    first = requests.get(f"{double.url}/v1/agent/services", timeout=5)
    digest = first.headers["X-Consul-ContentHash"]

    with later(0.2, lambda: double.deregister_service("push-3")) as change:
        started = time.monotonic()
        second = requests.get(f"{double.url}/v1/agent/services?hash={digest}&wait=30s", timeout=20)
        returned_at = time.monotonic()

    # A 30 s wait that ended with the change in it was woken by the change.
    assert returned_at >= change.ran_at
    assert returned_at - started >= 0.2
    assert second.headers["X-Consul-ContentHash"] != digest
    assert "push-3" not in second.json()


def test_reads_carry_index_leader_contact_and_consistency_headers(double, fleet):
    default = requests.get(f"{double.url}/v1/health/service/orders", timeout=5)
    stale = requests.get(f"{double.url}/v1/health/service/orders?stale", timeout=5)

    assert int(default.headers["X-Consul-Index"]) >= 1
    assert default.headers["X-Consul-KnownLeader"] == "true"
    assert default.headers["X-Consul-LastContact"] == "0"
    assert default.headers["X-Consul-Effective-Consistency"] == "leader"
    assert stale.headers["X-Consul-Effective-Consistency"] == "stale"
    assert default.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("query", ["index=10&wait=soon", "index=-1"])
def test_an_invalid_wait_or_index_is_a_bad_request(client, query, double):
    response = requests.get(f"{double.url}/v1/catalog/services?{query}", timeout=5)

    assert response.status_code == 400
    assert response.text in ("Invalid wait time", "Invalid index")
    with pytest.raises(BadRequest):
        client.catalog.services(index=10, wait="soon")
