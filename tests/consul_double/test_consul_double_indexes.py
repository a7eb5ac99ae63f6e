"""Which index entries a write moves, and how ?index and ?wait parse, as in Consul's source."""

from __future__ import annotations

import pytest
import requests

from demo.consul.protocol import Request
from demo.consul.queries import MAX_WAIT_S, query_options


def index_of(double, path: str) -> int:
    return int(requests.get(f"{double.url}{path}", timeout=5).headers["X-Consul-Index"])


def indexes(double, *paths: str) -> dict[str, int]:
    return {path: index_of(double, path) for path in paths}


# ----- which entries a write moves --------------------------------------------------------------


def test_a_service_registration_moves_the_nodes_and_its_node_index(double, fleet):
    # state/catalog_ce.go catalogInsertService updates "nodes" and "node.<name>" too.
    paths = ("/v1/catalog/nodes", "/v1/catalog/node/node-a", "/v1/catalog/node/node-b")
    before = indexes(double, *paths)

    double.register_service("node-a", "billing-1", "billing", port=18300)
    after = indexes(double, *paths)

    assert after["/v1/catalog/nodes"] > before["/v1/catalog/nodes"]
    assert after["/v1/catalog/node/node-a"] > before["/v1/catalog/node/node-a"]
    assert after["/v1/catalog/node/node-b"] == before["/v1/catalog/node/node-b"]


def test_a_service_deregistration_moves_the_nodes_index(double, fleet):
    before = index_of(double, "/v1/catalog/nodes")

    double.deregister_service("orders-1")

    assert index_of(double, "/v1/catalog/nodes") > before


def test_removing_a_node_check_moves_the_index_of_every_service_on_that_node(double, fleet):
    # state/catalog.go deleteCheckTxn: a node check's removal runs updateAllServiceIndexesOfNode.
    double.register_check("node-b", "disk", "Disk space", status="warning")
    on_b = [s.name for s in double.catalog.by_node["node-b"].values()]
    on_a_only = sorted(
        {s.name for s in double.catalog.by_node["node-a"].values()} - set(on_b) - {"consul"}
    )
    assert on_b and on_a_only
    paths = [f"/v1/health/service/{name}" for name in [*on_b, *on_a_only]]
    before = indexes(double, *paths)

    double.deregister_check("disk", node="node-b")
    after = indexes(double, *paths)

    for name in on_b:
        assert after[f"/v1/health/service/{name}"] > before[f"/v1/health/service/{name}"], name
    for name in on_a_only:
        assert after[f"/v1/health/service/{name}"] == before[f"/v1/health/service/{name}"], name


def test_a_node_address_change_moves_nodes_and_its_services_but_not_the_service_list(double, fleet):
    paths = ("/v1/catalog/nodes", "/v1/catalog/services", "/v1/health/service/payments")
    before = indexes(double, *paths)
    meta = dict(double.catalog.nodes["node-b"].meta)

    double.register_node("node-b", "10.0.0.9", meta)
    after = indexes(double, *paths)

    assert after["/v1/catalog/nodes"] > before["/v1/catalog/nodes"]
    assert after["/v1/health/service/payments"] > before["/v1/health/service/payments"]
    assert after["/v1/catalog/services"] == before["/v1/catalog/services"]
    entries = requests.get(f"{double.url}/v1/health/service/payments", timeout=5).json()
    assert {e["Node"]["Address"] for e in entries if e["Node"]["Node"] == "node-b"} == {"10.0.0.9"}


def test_a_watch_on_a_removed_node_wakes_when_it_comes_back(double, fleet, later):
    double.deregister_node("node-c")
    index = index_of(double, "/v1/catalog/node/node-c")

    with later(0.3, lambda: double.register_node("node-c", "127.0.0.3")):
        answer = requests.get(
            f"{double.url}/v1/catalog/node/node-c",
            params={"index": index, "wait": "30s"},
            timeout=10,
        )

    assert int(answer.headers["X-Consul-Index"]) > index
    assert answer.json()["Node"]["Address"] == "127.0.0.3"


# ----- ?index ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index", ["abc", "-1", "+1", "1.5", "²", "١٢", "18446744073709551616", " 1"]
)
def test_an_index_that_is_not_a_uint64_is_a_bad_request(double, index):
    # agent/http.go parseWait: strconv.ParseUint(index, 10, 64).
    response = requests.get(f"{double.url}/v1/catalog/services", params={"index": index}, timeout=5)

    assert (response.status_code, response.text) == (400, "Invalid index")


def test_an_empty_index_is_no_index(double):
    response = requests.get(f"{double.url}/v1/catalog/services?index=", timeout=5)

    assert response.status_code == 200


# ----- ?wait ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("+2s", 2.0),
        ("1.5s", 1.5),
        (".5m", 30.0),
        ("1500ms", 1.5),
        ("2000000us", 2.0),
        ("2000000µs", 2.0),
        ("2000000μs", 2.0),
        ("3000000000ns", 3.0),
        ("1h", MAX_WAIT_S),
        ("2h45m", MAX_WAIT_S),
    ],
)
def test_a_wait_parses_as_a_go_duration_capped_at_ten_minutes(wait, seconds):
    options = query_options(Request("GET", "/v1/catalog/services", [("wait", wait)], {}, b"", 0))

    # Up to wait/16 of jitter on top, as lib.RandomStagger adds.
    assert seconds <= options.wait_s <= seconds * (1 + 1 / 16)


@pytest.mark.parametrize("wait", ["0", "0s", "-5s", "-1h"])
def test_a_zero_or_negative_wait_is_the_five_minute_default(wait):
    options = query_options(Request("GET", "/v1/catalog/services", [("wait", wait)], {}, b"", 0))

    assert 300.0 <= options.wait_s <= 300.0 * (1 + 1 / 16)


def test_a_negative_wait_still_blocks_until_a_change(double, fleet, later):
    index = index_of(double, "/v1/health/service/orders")

    with later(0.3, lambda: double.set_check("service:orders-1", "critical", "down")):
        answer = requests.get(
            f"{double.url}/v1/health/service/orders",
            params={"index": index, "wait": "-1s"},
            timeout=10,
        )

    assert int(answer.headers["X-Consul-Index"]) > index


@pytest.mark.parametrize(
    "wait", ["soon", "1", "5 s", "1e3s", "s", ".s", "1.5.5s", "--1s", "٣s", "3000000h", "1d"]
)
def test_an_invalid_wait_is_a_bad_request(double, wait):
    response = requests.get(
        f"{double.url}/v1/catalog/services", params={"index": 1, "wait": wait}, timeout=5
    )

    assert (response.status_code, response.text) == (400, "Invalid wait time")
