"""Answers ACLs filtered never make services or instances gone, and the source says what is missing.

Consul >= 1.13 answers a token that may not read something with `200`, the rest, and
`X-Consul-Results-Filtered-By-ACLs: true`. The token's policy is changed in place, as an
operator editing it in Consul would, after a first pass that could see everything.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.collection.runner import run_pass
from demo.consul import ConsulDouble
from tests.consul.conftest import TOKEN_ENV

MANAGEMENT = "8d1f1a52-0000-4000-8000-management00"
READER = "5b7c0c1e-0000-4000-8000-reader000000"
POLICY = "quarterdeck-read"
READ_ALL = {"service_prefix": {"": "read"}, "node_prefix": {"": "read"}}


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    """A Consul double with ACLs on (default deny) and a read-everything token."""
    with ConsulDouble(acl_token=MANAGEMENT) as running:
        running.create_acl_policy(POLICY, READ_ALL)
        running.create_acl_token(READER, policies=[POLICY])
        yield running


@pytest.fixture
def collected(fleet, monkeypatch, consul_qd, make_collector, make_api):
    """A collector that saw the whole fleet with the reader token, and the API."""
    monkeypatch.setenv(TOKEN_ENV, READER)
    collector = make_collector(consul_qd)
    assert run_pass(consul_qd, collector).ok
    api = make_api(consul_qd)
    assert api.source()["warnings"] == []
    return consul_qd, collector, api


def warnings_by_read(api) -> dict[str, dict]:
    return {w["read"]: w for w in api.source()["warnings"]}


def test_a_service_the_token_can_no_longer_read_is_not_marked_gone_and_the_warning_names_it(
    double, collected, collect_until
):
    qd, collector, api = collected
    double.create_acl_policy(POLICY, {**READ_ALL, "service": {"payments": "deny"}})
    # Something the token can see changes, so the catalog watch answers (filtered).
    double.register_service("node-a", "ledger-1", "ledger", port=7000)

    collect_until(qd, collector, lambda: "ledger" in api.services())
    collect_until(qd, collector, lambda: "GET /v1/health/service/<name>" in warnings_by_read(api))

    services = api.services()
    assert services["payments"]["instances"]["total"] == 2
    assert api.services("?health=gone") == {}
    warnings = warnings_by_read(api)
    catalog = warnings["GET /v1/catalog/services"]
    assert catalog["kind"] == "acl_filtered" and catalog["permission"] == "service:read"
    service = warnings["GET /v1/health/service/<name>"]
    assert service["permission"] == "service:read" and "payments" in service["message"]
    page = api.page("/sources")
    assert "payments" in page and "service:read" in page

    # Given the permission back, the warnings go and the data flows again.
    double.create_acl_policy(POLICY, READ_ALL)
    double.set_check("service:payments-1", "critical", "HTTP 500")
    collect_until(qd, collector, lambda: api.services()["payments"]["health"] == "critical")
    collect_until(qd, collector, lambda: warnings_by_read(api) == {})


def test_instances_on_a_node_the_token_cannot_read_stay_and_the_warning_asks_for_node_read(
    double, collected, collect_until
):
    qd, collector, api = collected
    double.create_acl_policy(POLICY, {**READ_ALL, "node": {"node-c": "deny"}})
    # A re-registration on another node: orders is fetched again, without orders-3 (node-c).
    double.register_service(
        "node-a", "orders-9", "orders", address="127.0.0.1", port=18190, tags=["http", "api"]
    )

    collect_until(qd, collector, lambda: api.services()["orders"]["instances"]["total"] == 4)
    collect_until(qd, collector, lambda: "GET /v1/health/service/<name>" in warnings_by_read(api))

    instances = {i["id"]: i for i in api.service("orders")["instances"]}
    assert {"orders-1", "orders-2", "orders-3", "orders-9"} <= set(instances)
    assert instances["orders-3"]["health"] == "passing"
    assert [t for t in api.service("orders")["transitions"] if t["to"] == "gone"] == []
    warnings = warnings_by_read(api)
    service = warnings["GET /v1/health/service/<name>"]
    assert service["permission"] == "node:read" and "orders" in service["message"]
    assert warnings["GET /v1/catalog/nodes"]["permission"] == "node:read"


def test_a_service_deregistered_while_filtering_is_still_found_gone(
    double, collected, collect_until
):
    qd, collector, api = collected
    double.create_acl_policy(POLICY, {**READ_ALL, "service": {"payments": "deny"}})
    double.deregister_service("push-1")
    double.deregister_service("push-2")
    double.deregister_service("push-3")

    # The filtered catalog lacks both payments and push; push's own answer is unfiltered [].
    collect_until(qd, collector, lambda: "push" in api.services("?health=gone"))
    assert "payments" not in api.services("?health=gone")
    assert api.services()["payments"]["instances"]["total"] == 2
