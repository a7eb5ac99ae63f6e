"""Spurious wakes, registration churn and output churn, as a client of real Consul meets them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests

from demo.consul import CHURN_META_KEY

TIMEOUT_S = 10.0


def index_of(double, path: str) -> int:
    return int(requests.get(f"{double.url}{path}", timeout=5).headers["X-Consul-Index"])


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def blocking_get(double, path: str, index: int, wait: str = "30s") -> requests.Response:
    return requests.get(
        f"{double.url}{path}", params={"index": index, "wait": wait}, timeout=TIMEOUT_S
    )


class Blocked:
    """A blocking query on a thread, so the test can wake it."""

    def __init__(self, double, path: str, index: int) -> None:
        self.response: requests.Response | None = None
        self._thread = threading.Thread(
            target=lambda: setattr(self, "response", blocking_get(double, path, index)),
            daemon=True,
        )
        self._thread.start()

    def join(self) -> requests.Response:
        self._thread.join(timeout=TIMEOUT_S)
        assert self.response is not None, "the blocking query did not return"
        return self.response


# ----- spurious wakes -------------------------------------------------------------------------


def test_an_injected_spurious_wake_returns_at_once_with_the_same_index(double, fleet):
    path = "/v1/health/service/orders"
    first = requests.get(f"{double.url}{path}", timeout=5)
    double.inject_fault(path, "spurious_wake", count=1, index_moves=False)

    # A 30 s wait that answers within the request timeout returned early.
    woken = blocking_get(double, path, int(first.headers["X-Consul-Index"]))

    assert woken.headers["X-Consul-Index"] == first.headers["X-Consul-Index"]
    assert woken.json() == first.json()


def test_an_injected_spurious_wake_can_move_the_index_with_nothing_changed(double, fleet, later):
    path = "/v1/health/service/orders"
    first = requests.get(f"{double.url}{path}", timeout=5)
    double.inject_fault(path, "spurious_wake", count=1, index_moves=True)

    woken = blocking_get(double, path, int(first.headers["X-Consul-Index"]))
    moved = int(woken.headers["X-Consul-Index"])

    assert moved > int(first.headers["X-Consul-Index"])
    assert woken.json() == first.json()
    # The moved index is now the endpoint's own: it never slides back, and it blocks again.
    assert index_of(double, path) == moved
    with later(0.3, lambda: double.set_check("service:orders-2", "critical", "boom")):
        changed = blocking_get(double, path, moved)
    assert int(changed.headers["X-Consul-Index"]) > moved
    assert "critical" in {c["Status"] for e in changed.json() for c in e["Checks"]}


def test_an_injected_spurious_wake_alternates_same_and_moved_by_default(double, fleet):
    path = "/v1/catalog/services"
    index = index_of(double, path)
    double.inject_fault(path, "spurious_wake", count=2)

    same = int(blocking_get(double, path, index).headers["X-Consul-Index"])
    moved = int(blocking_get(double, path, index).headers["X-Consul-Index"])

    assert (same, moved > index) == (index, True)


def test_reads_without_an_index_do_not_use_up_a_spurious_wake(double, fleet, later):
    path = "/v1/health/service/orders"
    index = index_of(double, path)
    double.inject_fault(path, "spurious_wake", count=1, index_moves=False)

    for _ in range(3):
        requests.get(f"{double.url}{path}", timeout=5)
    woken = blocking_get(double, path, index)

    assert woken.headers["X-Consul-Index"] == str(index)


def test_spurious_wake_from_python_ends_only_the_queries_under_its_prefix(double, fleet):
    orders, services = "/v1/health/service/orders", "/v1/catalog/services"
    woken = Blocked(double, orders, index_of(double, orders))
    untouched = Blocked(double, services, index_of(double, services))
    wait_for(lambda: double.request_count(services) >= 2, "the catalog query to arrive")

    wait_for(lambda: double.spurious_wake(orders) == 1, "the orders query to wake")

    assert woken.join().status_code == 200
    assert untouched.response is None
    wait_for(lambda: double.spurious_wake(services) == 1, "the catalog query to wake")
    assert untouched.join().status_code == 200


def test_a_spurious_wake_rate_keeps_waking_blocked_queries(double, fleet):
    path = "/v1/health/service/orders"
    index = index_of(double, path)
    double.start_fault("spurious_wake", 20, path_prefix=path)

    answers, sent = [], []
    for _ in range(4):
        sent.append(index)
        answers.append(blocking_get(double, path, index))
        index = int(answers[-1].headers["X-Consul-Index"])
    returned = [int(answer.headers["X-Consul-Index"]) for answer in answers]

    # Each wait ended early: alternately at the index sent and at a moved one, same body.
    assert any(r == s for r, s in zip(returned, sent, strict=True))
    assert any(r > s for r, s in zip(returned, sent, strict=True))
    assert all(answer.json() == answers[0].json() for answer in answers)
    assert double.fault_events("spurious_wake") >= 4


# ----- churn ----------------------------------------------------------------------------------


def test_churn_re_registers_other_services_moving_the_indexes_consul_moves(double, fleet):
    before = {
        path: index_of(double, path)
        for path in (
            "/v1/catalog/services",
            "/v1/catalog/nodes",
            "/v1/catalog/service/payments",
            "/v1/health/service/payments",
            "/v1/health/service/orders",
            "/v1/health/state/any",
        )
    }
    names = requests.get(f"{double.url}/v1/catalog/services", timeout=5).json()

    double.start_fault("churn", 50, services=["payments"])
    woken = blocking_get(double, "/v1/catalog/services", before["/v1/catalog/services"])
    wait_for(lambda: double.fault_events("churn") >= 3, "three churn events")
    double.stop_fault("churn")
    after = {path: index_of(double, path) for path in before}

    # A new index, the same names and tags: the catalog watch learns nothing from it.
    assert int(woken.headers["X-Consul-Index"]) > before["/v1/catalog/services"]
    assert woken.json() == names
    for path in ("/v1/catalog/services", "/v1/catalog/nodes", "/v1/catalog/service/payments"):
        assert after[path] > before[path], path
    assert after["/v1/health/service/payments"] > before["/v1/health/service/payments"]
    # Neither the watched service nor the checks moved.
    assert after["/v1/health/service/orders"] == before["/v1/health/service/orders"]
    assert after["/v1/health/state/any"] == before["/v1/health/state/any"]
    metas = [
        s["ServiceMeta"]
        for s in requests.get(f"{double.url}/v1/catalog/service/payments", timeout=5).json()
    ]
    assert any(CHURN_META_KEY in meta for meta in metas)


def test_churn_keeps_the_instances_checks(double, fleet):
    double.start_fault("churn", 100, services=["payments"])
    wait_for(lambda: double.fault_events("churn") >= 5, "five churn events")
    double.stop_fault()

    entries = requests.get(f"{double.url}/v1/health/service/payments", timeout=5).json()

    assert all(
        [c["CheckID"] for c in entry["Checks"]]
        == ["serfHealth", f"service:{entry['Service']['ID']}"]
        for entry in entries
    )


def test_stopped_churn_moves_nothing_more(double, fleet):
    double.start_fault("churn", 100)
    wait_for(lambda: double.fault_events("churn") >= 2, "two churn events")
    double.stop_fault("churn")
    index = index_of(double, "/v1/catalog/services")

    answer = blocking_get(double, "/v1/catalog/services", index, wait="2s")

    assert answer.headers["X-Consul-Index"] == str(index)


def test_an_identical_re_registration_moves_no_index(double, fleet):
    # state/catalog.go ensureServiceTxn: IsSameService returns before any index update.
    service = double.catalog.services["payments-1"]
    before = double.index

    double.catalog.register_service(service, checks=None)

    assert double.index == before


# ----- output churn ---------------------------------------------------------------------------


def test_output_churn_changes_outputs_not_statuses_and_moves_checks_and_the_service(double, fleet):
    before = {
        path: index_of(double, path)
        for path in (
            "/v1/health/state/any",
            "/v1/health/service/payments",
            "/v1/health/service/orders",
            "/v1/catalog/services",
        )
    }
    statuses = {
        (c["Node"], c["CheckID"]): c["Status"]
        for c in requests.get(f"{double.url}/v1/health/state/any", timeout=5).json()
    }

    double.start_fault("output_churn", 50, services=["payments"])
    wait_for(lambda: double.fault_events("output_churn") >= 3, "three output changes")
    double.stop_fault("output_churn")
    checks = requests.get(f"{double.url}/v1/health/state/any", timeout=5).json()
    after = {path: index_of(double, path) for path in before}

    assert {(c["Node"], c["CheckID"]): c["Status"] for c in checks} == statuses
    assert any("(sample " in c["Output"] for c in checks if c["ServiceName"] == "payments")
    assert not any("(sample " in c["Output"] for c in checks if c["ServiceName"] != "payments")
    assert after["/v1/health/state/any"] > before["/v1/health/state/any"]
    assert after["/v1/health/service/payments"] > before["/v1/health/service/payments"]
    assert after["/v1/health/service/orders"] == before["/v1/health/service/orders"]
    assert after["/v1/catalog/services"] == before["/v1/catalog/services"]


# ----- control --------------------------------------------------------------------------------


def test_rate_faults_stop_with_the_double(double, fleet):
    double.start_fault("churn", 10)
    double.start_fault("output_churn", 10)

    double.stop()

    assert double.rate_faults() == []


def test_clear_faults_stops_rate_faults_too(double, fleet):
    double.start_fault("spurious_wake", 5)

    double.clear_faults()

    assert double.rate_faults() == []


@pytest.mark.parametrize(
    ("kind", "rate", "message"),
    [("flood", 1, "rate fault kind"), ("churn", 0, "rate_per_s"), ("churn", 10_000, "rate_per_s")],
)
def test_a_bad_rate_fault_is_refused(double, kind, rate, message):
    with pytest.raises(ValueError, match=message):
        double.start_fault(kind, rate)
