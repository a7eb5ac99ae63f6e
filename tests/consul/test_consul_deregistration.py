"""A service that leaves the catalog is marked gone, not deleted, and comes back on return."""

from __future__ import annotations

from app.collection.runner import run_pass


def test_a_deregistered_service_is_marked_gone_and_comes_back_when_registered_again(
    fleet, double, consul_qd, make_collector, make_api, collect_until
):
    collector = make_collector(consul_qd)
    api = make_api(consul_qd)
    assert run_pass(consul_qd, collector).ok

    with double.batch():
        for number in (1, 2, 3):
            double.deregister_service(f"push-{number}")
    collect_until(consul_qd, collector, lambda: api.service("push")["gone_at"])

    push = api.service("push")
    assert push["gone_at"].endswith("Z")
    assert {i["id"]: i["health"] for i in push["instances"]} == {
        "push-1": "gone", "push-2": "gone", "push-3": "gone",
    }  # fmt: skip
    assert {(t["instance"], t["to"]) for t in push["transitions"]} == {
        ("push-1", "gone"), ("push-2", "gone"), ("push-3", "gone"),
    }  # fmt: skip
    assert "push" not in api.services()
    assert api.services("?gone=1")["push"]["gone_at"] == push["gone_at"]

    double.register_service("node-a", "push-1", "push", address="127.0.0.1", port=18140,
                            tags=["websocket", "push"], meta={"version": "0.9.5"})  # fmt: skip
    collect_until(consul_qd, collector, lambda: api.service("push")["gone_at"] is None)

    push = api.service("push")
    assert api.services()["push"]["instances"]["total"] == 1
    instances = {i["id"]: i for i in push["instances"]}
    assert instances["push-1"]["gone_at"] is None and instances["push-1"]["version"] == "0.9.5"
    assert instances["push-2"]["health"] == "gone"
    assert push["versions"] == ["0.9.5"]


def test_one_instance_leaving_keeps_the_service_and_marks_only_that_instance_gone(
    fleet, double, consul_qd, make_collector, make_api, collect_until
):
    collector = make_collector(consul_qd)
    api = make_api(consul_qd)
    assert run_pass(consul_qd, collector).ok

    double.deregister_service("orders-3")
    collect_until(consul_qd, collector, lambda: api.services()["orders"]["instances"]["total"] == 2)

    orders = api.service("orders")
    assert orders["gone_at"] is None and orders["versions"] == ["2.4.1"]
    gone = {i["id"]: i for i in orders["instances"]}["orders-3"]
    assert gone["health"] == "gone" and gone["gone_at"]
