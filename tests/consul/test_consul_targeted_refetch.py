"""A check change patches the services it touches without fetching them; registrations are
reconciled by fetching only what the catalog names, or by a sweep that skips unmoved services."""

from __future__ import annotations

from app.collection.runner import run_pass
from tests.consul.conftest import reregister


def fetched_services(requests) -> set[str]:
    prefix = "/v1/health/service/"
    return {path[len(prefix) :] for path, _ in requests if path.startswith(prefix)}


def test_a_new_service_is_fetched_alone(
    double, fleet, counting_proxy, make_consul_qd, make_collector
):
    qd = make_consul_qd(url=counting_proxy.url, wait_s=5)
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    before = len(counting_proxy.requests)
    double.register_service(
        "node-c",
        "ledger-1",
        "ledger",
        address="127.0.0.1",
        port=18199,
        checks=({"CheckID": "service:ledger-1", "Name": "ledger", "Status": "passing"},),
    )
    updates = collector.collect()
    assert [s.name for s in updates[0].services] == ["ledger"]
    assert fetched_services(counting_proxy.requests[before:]) == {"ledger"}


def test_a_check_flap_patches_only_the_flapping_service_without_fetching_it(
    double, fleet, counting_proxy, make_consul_qd, make_collector
):
    qd = make_consul_qd(url=counting_proxy.url, wait_s=5)
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    payments = next(i for i in fleet if i.service == "payments")
    before = len(counting_proxy.requests)
    double.set_check(f"service:{payments.service_id}", "critical", "HTTP 500", payments.node)
    updates = collector.collect()
    [record] = updates[0].services
    assert record.name == "payments"
    [instance] = [i for i in record.instances if i.id == payments.service_id]
    check = {c.check_id: c for c in instance.checks}[f"service:{payments.service_id}"]
    assert (check.status, check.output) == ("critical", "HTTP 500")
    assert fetched_services(counting_proxy.requests[before:]) == set()


def test_a_re_registration_the_catalog_does_not_show_is_found_by_a_sweep(
    double, fleet, counting_proxy, make_consul_qd, make_collector, eventually
):
    qd = make_consul_qd(url=counting_proxy.url, wait_s=5)
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    before = len(counting_proxy.requests)
    # Same name, same tags: /v1/catalog/services moves its index and shows nothing new.
    reregister(double, "orders-2", port=18999)
    updates = collector.collect()
    assert [s.name for s in updates[0].services] == ["orders"]
    [instance] = [i for i in updates[0].services[0].instances if i.id == "orders-2"]
    assert instance.port == 18999
    # The sweep asked for every service, but only orders' index had moved.
    assert fetched_services(counting_proxy.requests[before:]) >= {"orders", "payments", "push"}
