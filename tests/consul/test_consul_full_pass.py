"""The first pass reads the whole catalog: services, instances, checks, maintenance, upstreams."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.collection.runner import run_pass
from app.models import ServiceUpstream


@pytest.fixture
def ledger(double) -> None:
    """Two instances the demo fleet lacks: one addressed by its node, one on a node in maintenance.

    ledger-1 has no Service.Address and its version only in a `version=` tag; ledger-2 takes its
    version from Meta and sits on a node under maintenance.
    """
    double.register_node("node-d", "10.9.8.7")
    double.register_node("node-e", "10.9.8.8")
    double.register_service(
        "node-d",
        "ledger-1",
        "ledger",
        port=7000,
        tags=["db", "version=0.3.1"],
        checks=[{"CheckID": "ledger-1-http", "Name": "ledger http", "Status": "warning",
                 "Output": "HTTP GET /healthz: 200 OK, took 900ms"}],
    )  # fmt: skip
    double.register_service(
        "node-e",
        "ledger-2",
        "ledger",
        address="10.9.8.80",
        port=7000,
        tags=["db"],
        meta={"version": "0.3.2"},
        checks=[{"CheckID": "ledger-2-http", "Name": "ledger http", "Status": "passing"}],
    )
    double.enable_node_maintenance("node-e", "disk replacement")


def test_a_full_pass_stores_every_service_with_instances_checks_and_versions(
    fleet, ledger, double, make_consul_qd, make_collector, make_api, store_url
):
    double.set_check("service:payments-1", "critical", "connection refused")
    double.enable_service_maintenance("payments-1", "rolling restart")
    qd = make_consul_qd(store_url)

    result = run_pass(qd, make_collector(qd))

    assert result.ok, result.error
    api = make_api(qd)
    services = api.services()
    assert {"gateway", "orders", "payments", "inventory", "push", "ledger"} <= set(services)
    assert services["orders-sidecar-proxy"]["health"] == "passing"
    orders = services["orders"]
    assert orders["health"] == "passing" and orders["stale"] is False
    assert orders["instances"] == {
        "total": 3, "passing": 3, "warning": 0, "critical": 0, "maintenance": 0,
    }  # fmt: skip
    assert orders["versions"] == ["2.4.1", "2.5.0-rc.1"]
    assert orders["tags"] == ["api", "canary", "http"]

    # An instance in maintenance counts under maintenance only, though its check is critical.
    assert services["payments"]["instances"] == {
        "total": 2, "passing": 1, "warning": 0, "critical": 0, "maintenance": 1,
    }  # fmt: skip
    assert services["payments"]["health"] == "passing"
    payments_1 = api.instance("payments", "payments-1")
    assert payments_1["health"] == "maintenance" and payments_1["maintenance"] is True
    assert payments_1["maintenance_reason"] == "rolling restart"
    checks = {c["id"]: c for c in payments_1["checks"]}
    assert checks["_service_maintenance:payments-1"]["kind"] == "maintenance"
    assert checks["_service_maintenance:payments-1"]["notes"] == "rolling restart"
    assert checks["service:payments-1"]["status"] == "critical"
    assert checks["service:payments-1"]["output"] == "connection refused"

    orders_1 = api.instance("orders", "orders-1")
    assert orders_1["node"] == "node-a"
    assert (orders_1["address"], orders_1["port"]) == ("127.0.0.1", 18110)
    assert orders_1["version"] == "2.4.1" and orders_1["tags"] == ["http", "api"]
    checks = {c["id"]: c for c in orders_1["checks"]}
    assert set(checks) == {"serfHealth", "service:orders-1"}
    assert checks["serfHealth"]["kind"] == "node"
    assert checks["serfHealth"]["name"] == "Serf Health Status"
    assert checks["service:orders-1"]["kind"] == "service"
    assert checks["service:orders-1"]["status"] == "passing"
    assert checks["service:orders-1"]["output"].startswith("HTTP GET http://127.0.0.1:18110")

    ledger_1 = api.instance("ledger", "ledger-1")
    assert ledger_1["address"] == "10.9.8.7", "falls back to the node's address"
    assert ledger_1["version"] == "0.3.1", "from the version= tag"
    assert ledger_1["health"] == "warning"
    ledger_2 = api.instance("ledger", "ledger-2")
    assert ledger_2["address"] == "10.9.8.80" and ledger_2["version"] == "0.3.2"
    assert ledger_2["health"] == "maintenance"
    assert ledger_2["maintenance_reason"] == "disk replacement"
    node_maintenance = {c["id"]: c for c in ledger_2["checks"]}["_node_maintenance"]
    assert node_maintenance["kind"] == "maintenance" and node_maintenance["status"] == "critical"
    assert services["ledger"]["health"] == "warning"
    assert services["ledger"]["instances"]["maintenance"] == 1
    assert services["ledger"]["versions"] == ["0.3.1", "0.3.2"]

    source = api.source()
    assert source["status"] == "ok" and source["last_success_at"] and source["last_error"] is None


def test_connect_upstreams_of_sidecars_are_recorded_for_the_service_they_front(
    fleet, consul_qd, make_collector
):
    assert run_pass(consul_qd, make_collector(consul_qd)).ok

    with consul_qd.store.session() as db:
        edges = {(u.service, u.upstream, u.source) for u in db.scalars(select(ServiceUpstream))}
    assert edges == {
        ("gateway", "orders", "consul"),
        ("orders", "inventory", "consul"),
        ("orders", "payments", "consul"),
    }


def test_a_sidecar_registered_later_adds_its_upstreams_to_the_service_it_fronts(
    fleet, double, consul_qd, make_collector, eventually
):
    collector = make_collector(consul_qd)
    assert run_pass(consul_qd, collector).ok
    double.register_service(
        "node-c",
        "push-3-sidecar-proxy",
        "push-sidecar-proxy",
        port=21999,
        kind="connect-proxy",
        proxy={
            "DestinationServiceName": "push",
            "DestinationServiceID": "push-3",
            "Upstreams": [{"DestinationType": "service", "DestinationName": "orders"}],
        },
        checks=[{"Name": "Connect Sidecar Listening", "Status": "passing"}],
    )

    def push_upstreams() -> set[str]:
        assert run_pass(consul_qd, collector).ok
        with consul_qd.store.session() as db:
            query = select(ServiceUpstream.upstream).where(ServiceUpstream.service == "push")
            return set(db.scalars(query))

    assert eventually(push_upstreams) == {"orders"}

    double.deregister_service("push-3-sidecar-proxy")
    eventually(lambda: push_upstreams() == set())
