"""A change fetches only the services it touches, not the whole catalog."""

from __future__ import annotations

from app.collection.runner import run_pass


def fetched_services(requests) -> set[str]:
    prefix = "/v1/health/service/"
    return {path[len(prefix) :] for path, _ in requests if path.startswith(prefix)}


def test_a_new_instance_with_a_check_refetches_only_its_service(
    double, fleet, counting_proxy, make_consul_qd, make_collector
):
    qd = make_consul_qd(url=counting_proxy.url, wait_s=5)
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    before = len(counting_proxy.requests)
    double.register_service(
        "node-c",
        "push-4",
        "push",
        address="127.0.0.1",
        port=18199,
        tags=("ws",),
        meta={"version": "5.0.0"},
        checks=({"CheckID": "service:push-4", "Name": "push", "Status": "passing"},),
    )
    updates = collector.collect()
    assert [s.name for s in updates[0].services] == ["push"]
    assert fetched_services(counting_proxy.requests[before:]) == {"push"}


def test_a_check_flap_refetches_only_the_flapping_service(
    double, fleet, counting_proxy, make_consul_qd, make_collector
):
    qd = make_consul_qd(url=counting_proxy.url, wait_s=5)
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    payments = next(i for i in fleet if i.service == "payments")
    before = len(counting_proxy.requests)
    double.set_check(f"service:{payments.service_id}", "critical", "HTTP 500", payments.node)
    updates = collector.collect()
    names = {s.name for s in updates[0].services}
    assert "payments" in names and names <= {"payments", "payments-sidecar-proxy"}
    assert fetched_services(counting_proxy.requests[before:]) == names
