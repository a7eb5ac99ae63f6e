"""The map narrows to a focus or to the unhealthy, groups past its limit, diffs two windows, and
refuses bad arguments with the error shape."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.auth.accounts import create_token
from app.config import MapConfig
from app.factory import create_app
from app.store.catalog import apply_catalog_update
from collectors.base import CatalogUpdate
from tests.map.conftest import now_minute, service_record
from tests.map.test_map_evidence import edges_of, nodes_of


def calls(maker, trace: int, source: str, target: str, *, n: int = 1, **child):
    """n calls source → target, each a client span and the callee's server span."""
    spans = []
    for i in range(n):
        client = maker.span(trace * 1000 + i, source, kind=3)
        spans += [client, maker.span(trace * 1000 + i, target, parent=client, kind=2, **child)]
    return spans


def test_focus_keeps_the_service_and_what_is_within_its_hops(api, spans_at, receive, roll_up):
    maker = spans_at()
    chain = ["a", "b", "c", "d", "e"]
    receive([s for i in range(4) for s in calls(maker, i, chain[i], chain[i + 1])])
    receive(calls(maker, 9, "x", "y"))
    roll_up()
    one = api("/api/v1/map", service="c").get_json()
    assert set(nodes_of(one)) == {"b", "c", "d"}
    assert set(edges_of(one)) == {("b", "c"), ("c", "d")}
    assert one["focus"] == {"service": "c", "hops": 1}
    two = api("/api/v1/map", service="c", hops="2").get_json()
    assert set(nodes_of(two)) == {"a", "b", "c", "d", "e"}
    assert two["totals"] == {"nodes": 7, "edges": 5}


def test_focus_on_an_unknown_service_is_a_404(api):
    response = api("/api/v1/map", service="nobody")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_only_unhealthy_keeps_the_unhealthy_and_their_neighbours(
    api, catalog, spans_at, receive, roll_up
):
    catalog(
        service_record("gateway"),
        service_record("orders", health="critical"),
        service_record("payments"),
        service_record("search"),
        service_record("ads"),
    )
    maker = spans_at()
    receive(
        calls(maker, 1, "gateway", "orders")
        + calls(maker, 2, "orders", "payments")
        + calls(maker, 3, "gateway", "search")
        + calls(maker, 4, "search", "ads")
    )
    roll_up()
    body = api("/api/v1/map", unhealthy="true").get_json()
    assert set(nodes_of(body)) == {"gateway", "orders", "payments"}
    assert set(edges_of(body)) == {("gateway", "orders"), ("orders", "payments")}
    assert nodes_of(body)["orders"]["health"] == "critical"
    assert body["unhealthy_only"] is True


def test_an_error_ratio_in_the_traces_makes_a_passing_service_a_warning(
    api, catalog, spans_at, receive, roll_up
):
    catalog(service_record("gateway"), service_record("orders"))
    maker = spans_at()
    # 200 requests in the 15-minute window: above [verdict] min_rate_rps (0.1/s).
    receive(calls(maker, 1, "gateway", "orders", n=100))
    receive([maker.span(5000 + i, "orders", kind=2, error=True) for i in range(100)])
    roll_up()
    node = nodes_of(api("/api/v1/map").get_json())["orders"]
    assert node["red"]["source"] == "traces"
    assert node["red"]["error_ratio"] == 0.5
    assert node["health"] == "warning"


def test_past_the_node_limit_the_rest_is_grouped_never_dropped(
    api, catalog, spans_at, receive, roll_up
):
    services = [service_record(f"team{t}-svc{i}") for t in range(4) for i in range(10)]
    services.append(service_record("team0-broken", health="critical"))
    catalog(*services)
    maker = spans_at()
    spans = []
    for i in range(10):
        spans += calls(maker, 100 + i, f"team0-svc{i}", f"team1-svc{i}")
        spans += calls(maker, 200 + i, f"team1-svc{i}", f"team2-svc{i}", n=2)
    spans += calls(maker, 300, "team0-broken", "team3-svc0")
    receive(spans)
    roll_up()
    body = api("/api/v1/map", limit="10").get_json()
    assert body["truncated"] is True
    assert len(body["nodes"]) <= 10
    nodes = nodes_of(body)
    assert nodes["team0-broken"]["kind"] == "service"  # the unhealthy stay on their own
    groups = {g["id"]: g["members"] for g in body["groups"]}
    assert groups == {"group:team0": 10, "group:team1": 10, "group:team2": 10, "group:team3": 10}
    assert sum(groups.values()) + sum(n["kind"] == "service" for n in body["nodes"]) == 41
    assert nodes["group:team1"]["group"]["members"] == 10
    edges = edges_of(body)
    between = edges[("group:team1", "group:team2")]
    assert between["members"] == 10
    assert between["evidence"] == ["traces"]
    assert between["rate_rps"] == pytest.approx(
        2 * edges[("group:team0", "group:team1")]["rate_rps"], rel=1e-3
    )
    assert ("team0-broken", "group:team3") in edges
    assert body["totals"]["nodes"] == 41


def test_a_small_fleet_is_not_grouped(api, catalog):
    catalog(*(service_record(f"svc-{i}") for i in range(12)))
    body = api("/api/v1/map").get_json()
    assert body["truncated"] is False and body["groups"] == []
    assert len(body["nodes"]) == 12


def test_compare_reports_what_appeared_vanished_and_changed(api, spans_at, receive, roll_up):
    now_at = spans_at(now_minute() - timedelta(minutes=5))
    then_at = spans_at(now_minute() - timedelta(minutes=65))
    spans = []
    # steady in both windows
    spans += calls(then_at, 1, "gw", "steady", n=4) + calls(now_at, 2, "gw", "steady", n=4)
    # only now / only then
    spans += calls(now_at, 3, "gw", "new")
    spans += calls(then_at, 4, "gw", "old")
    # error ratio 0 → 1/2
    spans += calls(then_at, 5, "gw", "flaky", n=4)
    spans += calls(now_at, 6, "gw", "flaky", n=2) + calls(now_at, 7, "gw", "flaky", n=2, error=True)
    # p95 10 ms → 500 ms
    spans += calls(then_at, 8, "gw", "slow", n=4) + calls(
        now_at, 9, "gw", "slow", n=4, duration_ms=500
    )
    # rate ×5
    spans += calls(then_at, 10, "gw", "busy", n=2) + calls(now_at, 11, "gw", "busy", n=10)
    receive(spans)
    roll_up()
    body = api("/api/v1/map", compare="1h").get_json()
    edges = edges_of(body)
    status = {k[1]: (e["diff"]["status"], e["diff"]["changes"]) for k, e in edges.items()}
    assert status == {
        "steady": ("same", []),
        "new": ("appeared", []),
        "old": ("vanished", []),
        "flaky": ("changed", ["error_ratio"]),
        "slow": ("changed", ["p95"]),
        "busy": ("changed", ["rate"]),
    }
    assert edges[("gw", "old")]["vanished"] is True
    assert edges[("gw", "old")]["rate_rps"] is None
    assert edges[("gw", "old")]["diff"]["before"]["rate_rps"] > 0
    assert edges[("gw", "flaky")]["diff"]["before"]["error_ratio"] == 0
    assert body["diff"]["edges"] == {"appeared": 1, "vanished": 1, "changed": 3, "same": 1}
    assert nodes_of(body)["old"]["diff"]["status"] == "vanished"
    assert nodes_of(body)["new"]["diff"]["status"] == "appeared"
    assert body["diff"]["window"]["end_at"] < body["window"]["start_at"]


def test_compare_at_a_time_ends_the_earlier_window_then(api, spans_at, receive, roll_up):
    then = now_minute() - timedelta(hours=3)
    receive(calls(spans_at(then - timedelta(minutes=5)), 1, "gw", "old"))
    roll_up()
    at = then.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = api("/api/v1/map", compare=at).get_json()
    assert body["diff"]["window"]["end_at"] == at
    assert body["diff"]["window"]["start_at"] == (then - timedelta(minutes=15)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert edges_of(body)[("gw", "old")]["diff"]["status"] == "vanished"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "0m"}, "since"),
        ({"since": "2099-01-01T00:00:00Z"}, "since"),
        ({"compare": "1 hour"}, "compare"),
        ({"compare": "2099-01-01T00:00:00Z"}, "compare"),
        ({"unhealthy": "maybe"}, "unhealthy"),
        ({"service": "a", "hops": "two"}, "hops"),
        ({"service": "a", "hops": "0"}, "hops"),
        ({"hops": "2"}, "hops"),
        ({"limit": "5"}, "limit"),
    ],
)
def test_bad_arguments_are_a_400_naming_the_field(api, params, field):
    response = api("/api/v1/map", **params)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request"
    assert field in error["message"]


def test_a_since_window_narrows_the_traced_edges(api, spans_at, receive, roll_up):
    receive(calls(spans_at(now_minute() - timedelta(minutes=40)), 1, "gw", "older"))
    receive(calls(spans_at(now_minute() - timedelta(minutes=2)), 2, "gw", "recent"))
    roll_up()
    assert set(edges_of(api("/api/v1/map").get_json())) == {("gw", "recent")}
    hour = api("/api/v1/map", since="1h").get_json()
    assert set(edges_of(hour)) == {("gw", "older"), ("gw", "recent")}
    assert 3600 <= hour["window"]["seconds"] < 3660  # from the first whole minute


@pytest.mark.parametrize(
    ("group_by", "record"),
    [
        ("tag:team=", lambda i: service_record(f"svc{i}", tags=[f"team=t{i % 3}"])),
        ("meta:team", lambda i: service_record(f"svc{i}", meta={"team": f"t{i % 3}"})),
    ],
)
def test_the_fleet_groups_by_a_tag_prefix_or_a_meta_key(make_qd, make_token, group_by, record):
    qd = make_qd(map=MapConfig(group_by=group_by, node_limit=10))
    with qd.store.session(write=True) as db:
        services = [record(i) for i in range(30)]
        apply_catalog_update(db, "consul", CatalogUpdate(qd.clock(), services))
        token = create_token(db, "map-reader", "viewer")
    client = create_app(qd=qd).test_client()
    body = client.get("/api/v1/map", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert body["group_by"] == group_by
    assert {g["id"]: g["members"] for g in body["groups"]} == {
        "group:t0": 10,
        "group:t1": 10,
        "group:t2": 10,
    }
    assert {n["group"]["by"] for n in body["nodes"]} == {group_by}


def test_focus_follows_declared_upstreams_and_services_known_only_to_the_traces(
    api, catalog, spans_at, receive, roll_up
):
    catalog(
        service_record("gateway", upstreams=["orders"]),
        service_record("orders", upstreams=["payments"]),
        service_record("payments"),
        service_record("lonely"),
    )
    maker = spans_at()
    receive([maker.span(1, "cron-job", kind=1)] + calls(maker, 2, "payments", "ledger"))
    roll_up()
    body = api("/api/v1/map", service="payments").get_json()
    assert set(nodes_of(body)) == {"orders", "payments", "ledger"}
    assert edges_of(body)[("orders", "payments")]["drift"] == "declared_only"
    assert edges_of(body)[("payments", "ledger")]["evidence"] == ["traces"]
    assert body["totals"] == {"nodes": 6, "edges": 3}
    assert body["totals"] == api("/api/v1/map").get_json()["totals"]
    alone = api("/api/v1/map", service="cron-job").get_json()
    assert [n["id"] for n in alone["nodes"]] == ["cron-job"]
    assert alone["nodes"][0]["red"]["source"] == "traces"
