"""Bad answers from Consul are source errors: no crash, nothing deleted, recovery on its own."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from app.collection.runner import PassResult, run_pass
from tests.consul.conftest import reregister

DEMO_SERVICES = {"gateway", "orders", "payments", "inventory", "push"}


def assert_catalog_intact(api) -> None:
    services = api.services()
    assert set(services) >= DEMO_SERVICES
    assert all(services[name]["instances"]["total"] >= 2 for name in DEMO_SERVICES)
    assert api.services("?health=gone") == {}


def make_change(double, path: str) -> Callable[..., bool]:
    """Change what `path` watches, and only that, so its long poll returns at once.

    Return a test that the change reached the API.
    """
    if path == "/v1/catalog/services":
        # Without a check, only the catalog moves.
        double.register_service("node-a", "ledger-1", "ledger", port=7000)
        return lambda api: "ledger" in api.services()
    double.set_check("service:push-1", "warning", "slow")
    return lambda api: api.services()["push"]["health"] == "warning"


def first_failed_pass(qd, collector, passes: int = 3) -> PassResult:
    """Run passes until one fails: the bad answer may come on the watch's next long poll."""
    for _ in range(passes):
        result = run_pass(qd, collector)
        if not result.ok:
            return result
    pytest.fail(f"no pass failed in {passes}")


WATCH_FAULTS = [
    (
        "/v1/health/state/critical",
        "malformed_json",
        "malformed answer to GET /v1/health/state/critical",
    ),
    ("/v1/catalog/services", "malformed_json", "malformed answer to GET /v1/catalog/services"),
    ("/v1/health/state/warning", "missing_fields", "Consul sent a check without 'Status'"),
    ("/v1/catalog/services", "missing_fields", "unexpected /v1/catalog/services answer"),
    (
        "/v1/health/state/critical",
        "http_500",
        "GET /v1/health/state/critical: 500 No cluster leader",
    ),
    ("/v1/catalog/services", "disconnect", "cannot reach Consul"),
]


@pytest.mark.parametrize(
    ("path", "kind", "reason"),
    WATCH_FAULTS,
    ids=[f"{path.split('/')[2]}-{kind}" for path, kind, _ in WATCH_FAULTS],
)
def test_a_bad_answer_to_a_watch_is_a_source_error_that_keeps_the_data_and_recovers(
    path, kind, reason, fleet, double, consul_qd, make_collector, make_api
):
    collector = make_collector(consul_qd)
    api = make_api(consul_qd)
    assert run_pass(consul_qd, collector).ok

    double.inject_fault(path, kind, count=1)
    arrived = make_change(double, path)
    failed = first_failed_pass(consul_qd, collector)

    assert not failed.ok and not failed.config_error
    assert reason in failed.error
    source = api.source()
    assert source["status"] == "error" and source["error_kind"] == "unavailable"
    assert reason in source["last_error"]
    assert_catalog_intact(api)
    assert api.services()["orders"]["stale"] is True

    recovered = run_pass(consul_qd, collector)

    assert recovered.ok, recovered.error
    assert api.source()["status"] == "ok"
    assert api.services()["orders"]["stale"] is False
    assert arrived(api), "the change that came with the bad answer is not lost"
    assert_catalog_intact(api)


@pytest.mark.parametrize("kind", ["malformed_json", "missing_fields", "http_500"])
def test_a_bad_answer_while_refetching_a_service_loses_no_change(
    kind, fleet, double, consul_qd, make_collector, make_api, eventually
):
    collector = make_collector(consul_qd)
    api = make_api(consul_qd)
    assert run_pass(consul_qd, collector).ok

    double.reset_request_counts()
    double.inject_fault("/v1/health/service/orders", kind, count=1)
    # A re-registration the catalog does not name: the reconciler must fetch orders again.
    reregister(double, "orders-2", port=18998)
    results = []

    def arrived():
        results.append(run_pass(consul_qd, collector))
        if not results[-1].ok:
            # The bad answer fails a pass, which keeps what was stored and starts over.
            assert "orders" in results[-1].error, results[-1].error
            assert_catalog_intact(api)
            return False
        return api.instance("orders", "orders-2")["port"] == 18998

    eventually(arrived, timeout=10, every=0)
    # The bad answer was served; the change still arrived. A pass fails unless a newer good
    # answer of the same service (the sweep's) superseded the bad one before it was applied.
    assert double.request_count("/v1/health/service/orders") >= 2
    assert results[-1].ok and api.source()["status"] == "ok"
    assert_catalog_intact(api)


def test_a_bad_answer_on_the_first_pass_writes_nothing(
    double, fleet, consul_qd, make_collector, make_api
):
    double.inject_fault("/v1/health/service/", "missing_fields")

    failed = run_pass(consul_qd, make_collector(consul_qd))

    assert not failed.ok
    assert "Consul sent an entry without 'Service'" in failed.error
    assert make_api(consul_qd).services("?gone=1") == {}


def test_an_index_that_goes_backwards_resets_the_watch_which_keeps_working(
    fleet,
    double,
    counting_proxy,
    make_consul_qd,
    make_collector,
    make_api,
    collect_until,
    eventually,
):
    qd = make_consul_qd(url=counting_proxy.url)
    collector = make_collector(qd)
    api = make_api(qd)
    assert run_pass(qd, collector).ok

    double.inject_fault("/v1/health/state/warning", "index_backwards", count=1)
    double.set_check("service:orders-2", "warning", "slow")
    collect_until(qd, collector, lambda: api.services()["orders"]["health"] == "warning")
    double.set_check("service:orders-2", "critical", "down")
    collect_until(qd, collector, lambda: api.services()["orders"]["health"] == "critical")

    def warning_indexes() -> list[str]:
        return [
            params.get("index", ["none"])[0]
            for path, params in counting_proxy.requests
            if path == "/v1/health/state/warning"
        ]

    # The critical list alone may show the failure before the warning watch blocks again.
    indexes = eventually(lambda: (found := warning_indexes())[3:] and found)
    # The full pass (no index), the watch answered with index 1, then the reset: a query
    # without an index, then blocking again from the real index.
    assert indexes[0] == "none" and indexes[1] != "none"
    assert indexes[2] == "none", indexes
    assert int(indexes[3]) > 1, indexes
    assert api.source()["status"] == "ok"
    started = time.monotonic()
    assert collector.collect() == []
    assert time.monotonic() - started > 0.5, "the watch went back to waiting"
