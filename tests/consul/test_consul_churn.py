"""Registrations churning elsewhere and blocking queries waking for nothing never hold back a
check change, never cause a full refetch per wake, and show on the Sources page.

Requests are counted at the double, so a collector that refetched every service on every move
of the catalog index (the old behaviour) fails these tests.
"""

from __future__ import annotations

import time

from app.collection.runner import run_pass
from collectors.consul import ConsulCollector

FETCH = "/v1/health/service/"
WATCHED = ("/v1/catalog/services", "/v1/catalog/nodes", "/v1/health/state/")


def run_passes_for(qd, collector, seconds: float) -> None:
    """Run passes back to back for about `seconds` (each blocks until something changes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = run_pass(qd, collector)
        assert result.ok, result.error


def test_under_registration_churn_a_check_change_arrives_without_refetching_every_service(
    double, fleet, make_consul_qd, make_collector, make_api, collect_until
):
    qd = make_consul_qd(wait_s=5)
    collector = make_collector(qd)
    api = make_api(qd)
    assert run_pass(qd, collector).ok
    services = len(api.services())
    double.reset_request_counts()

    double.start_fault("churn", rate_per_s=30, exclude=["payments"])
    run_passes_for(qd, collector, 2.0)
    double.set_check("service:payments-2", "critical", "HTTP 500", "node-c")
    collect_until(qd, collector, lambda: api.services()["payments"]["health"] == "critical")
    run_passes_for(qd, collector, 1.0)
    double.stop_fault("churn")

    moves = double.fault_events("churn")
    fetches = double.request_count(FETCH)
    catalog_reads = double.request_count("/v1/catalog/services")
    assert moves >= 30, moves
    # Sweeps at most every 5 s, each over every service once; urgent fetches name a service.
    assert fetches <= 2 * services + 10, (fetches, moves)
    # The catalog watch fell back to a rate-limited loop: far fewer reads than moves.
    assert catalog_reads <= moves / 3, (catalog_reads, moves)
    churn = [w for w in api.source()["warnings"] if w["kind"] == "churn"]
    assert {w["read"] for w in churn} >= {"GET /v1/catalog/services"}, churn
    page = api.page("/sources")
    assert "Churning index" in page and "/v1/catalog/services" in page


def test_spurious_wakes_deliver_a_check_change_and_cost_no_refetch(
    double, fleet, make_consul_qd, make_collector, make_api, collect_until
):
    qd = make_consul_qd(wait_s=5)
    collector = make_collector(qd)
    api = make_api(qd)
    assert run_pass(qd, collector).ok
    double.reset_request_counts()

    # Every blocking query returns 20 times a second, its index moved, nothing changed.
    double.start_fault("spurious_wake", rate_per_s=20, index_moves=True)
    run_passes_for(qd, collector, 2.0)
    double.set_check("service:orders-2", "warning", "slow", "node-b")
    collect_until(qd, collector, lambda: api.services()["orders"]["health"] == "warning")
    double.stop_fault("spurious_wake")

    wakes = double.fault_events("spurious_wake")
    assert wakes >= 20, wakes
    # The catalog hint queues a sweep at most every 5 s: no fetch per wake.
    assert double.request_count(FETCH) <= len(api.services()) + 10
    instance = api.instance("orders", "orders-2")
    assert instance["health"] == "warning"
    checks = {c["id"]: c for c in instance["checks"]}
    assert checks["service:orders-2"]["output"] == "slow"
    assert [(t["instance"], t["to"]) for t in api.service("orders")["transitions"]] == [
        ("orders-2", "warning")
    ]


def test_a_check_change_is_not_held_back_by_a_sweep_in_progress(
    double, fleet, make_consul_qd, make_collector, make_api, collect_until
):
    # A sweep that reads one service a second: it is still going when the check changes.
    qd = make_consul_qd(wait_s=5)
    collector = make_collector(qd)
    collector.sweep_rate_per_s = 1.0
    api = make_api(qd)
    assert run_pass(qd, collector).ok
    double.register_service("node-a", "orders-9", "orders", port=18190, tags=["http", "api"])
    double.reset_request_counts()

    double.start_fault("churn", rate_per_s=5, exclude=["payments"])
    run_passes_for(qd, collector, 1.0)
    assert collector.reconciling, "a sweep is under way"
    fetched_before = double.request_count(FETCH + "payments")
    double.set_check("service:payments-1", "critical", "HTTP 500", "node-b")
    collect_until(qd, collector, lambda: api.services()["payments"]["health"] == "critical")
    double.stop_fault("churn")

    assert collector.reconciling, "the sweep is still under way"
    assert double.request_count(FETCH + "payments") == fetched_before


def test_under_churn_that_never_stops_sweeps_rest_three_times_their_length(
    double, make_consul_qd, make_api
):
    double.register_node("node-a", "127.0.0.1")
    for number in range(120):
        double.register_service(
            "node-a",
            f"svc-{number}-1",
            f"svc-{number}",
            address="127.0.0.1",
            port=20000 + number,
            checks=[{"CheckID": f"svc-{number}-ok", "Name": "ok", "Status": "passing"}],
        )
    qd = make_consul_qd(wait_s=5)
    # 120 services at 40 a second: a sweep of about 3 s, then a rest of about 9 s.
    collector = ConsulCollector(
        double.url, wait_s=5, clock=qd.clock, sweep_rate_per_s=40, min_sweep_interval_s=0.5
    )
    try:
        assert run_pass(qd, collector).ok
        double.start_fault("churn", rate_per_s=10)
        double.reset_request_counts()
        started = time.monotonic()
        while double.request_count(FETCH) < 120:  # the first sweep, set off by the churn
            run_passes_for(qd, collector, 0.5)
            assert time.monotonic() - started < 60, "the churn never set off a sweep"
        after_first = double.request_count(FETCH)
        run_passes_for(qd, collector, 4.0)  # well inside the rest, however slow the machine
        # Resting: no second sweep yet, though the catalog index kept moving all along.
        assert double.request_count(FETCH) - after_first < 40, double.request_count(FETCH)
        while double.request_count(FETCH) < after_first + 120:  # ... and then it sweeps again
            run_passes_for(qd, collector, 0.5)
            assert time.monotonic() - started < 120, "no second sweep"
    finally:
        double.stop_fault("churn")
        collector.close()
        double.stop()
        collector.close(timeout=5)
