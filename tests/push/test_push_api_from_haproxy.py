"""`/api/v1/push/connections` from a real HAProxy holding real WebSocket connections."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets
from tests.web.test_openapi import OPENAPI_FILE, schema_errors


def instances_of(body: dict, service: str = "push") -> dict[str, dict]:
    [found] = [s for s in body["by_service"] if s["service"] == service]
    return {i["instance"]: i for i in found["instances"]}


def test_total_and_per_instance_counts_match_the_connections_held(push_edge):
    edge = push_edge(2)
    with open_websockets(edge.haproxy.frontend_ws_url, 6):
        assert edge.collect().ok
        body = edge.api()
        held = {f"s{n}": s.open_connections for n, s in enumerate(edge.servers, start=1)}

    assert sum(held.values()) == 6
    assert body["total"] == 6
    counted = instances_of(body)
    assert {name: i["connections"] for name, i in counted.items()} == held
    assert all(i["source"] == "edge" and i["source_kind"] == "haproxy" for i in counted.values())
    assert body["observed_at"].endswith("Z")
    [balancer] = body["balancers"]
    assert balancer["balancer"] == "edge" and balancer["per_server"] is True
    assert balancer["connections"] == 6  # the frontend's scur
    assert body["stale"] is False and body["uncounted_reason"] is None


def test_an_instance_holding_all_connections_is_imbalanced(push_edge):
    edge = push_edge(3)
    edge.set_state("s2", "maint")
    edge.set_state("s3", "maint")
    with open_websockets(edge.haproxy.frontend_ws_url, 6):
        edge.set_state("s2", "ready")
        edge.set_state("s3", "ready")
        edge.wait_all_up()
        assert edge.collect().ok
        body = edge.api()

    counted = instances_of(body)
    assert counted["s1"]["connections"] == 6
    assert counted["s1"]["imbalanced"] is True
    assert counted["s1"]["fair_share"] == 2.0
    assert not counted["s2"]["imbalanced"]
    assert [(i["instance"], i["connections"], i["fair_share"]) for i in body["imbalance"]] == [
        ("s1", 6, 2.0)
    ]


def test_drain_progress_after_set_server_state_drain(push_edge):
    edge = push_edge(2)
    edge.set_state("s2", "maint")
    with ExitStack() as stack:
        clients = stack.enter_context(open_websockets(edge.haproxy.frontend_ws_url, 6))
        edge.set_state("s2", "ready")
        edge.wait_all_up()
        assert edge.collect().ok
        edge.set_state("s1", "drain")
        assert edge.collect().ok
        started = edge.api()
        [drain] = started["drains"]
        assert (drain["server"], drain["state"], drain["connections"]) == ("s1", "drain", 6)
        time.sleep(1.5)  # let the drain run long enough to have a rate
        for client in clients[:3]:
            client.close()
        wait_for(lambda: edge.servers[0].open_connections == 3, "three connections closed")
        wait_for(lambda: edge.collect().ok and edge.api()["drains"][0]["connections"] == 3,
                 "HAProxy counts three left")  # fmt: skip
        body = edge.api()

    [drain] = body["drains"]
    assert drain["instance"] == "s1" and drain["balancer"] == "edge"
    assert drain["at_start"] == 6
    assert drain["connections"] == 3
    assert drain["falling_per_min"] > 0
    assert drain["time_left_s"] > 0
    assert drain["drained"] is False
    assert drain["started_at"].endswith("Z")
    # A draining server takes no new connections, so it gets no fair share.
    assert instances_of(body)["s1"]["active"] is False


def test_numbers_of_a_balancer_that_went_away_stay_and_are_marked_stale(push_edge):
    edge = push_edge(2)
    with open_websockets(edge.haproxy.frontend_ws_url, 4):
        assert edge.collect().ok
        edge.haproxy.stop()
    result = edge.collect()
    assert not result.ok

    body = edge.api()
    counted = instances_of(body)
    assert sum(i["connections"] for i in counted.values()) == 4
    assert all(i["stale"] for i in counted.values())
    assert body["total"] == 4 and body["stale"] is True
    assert body["balancers"][0]["stale"] is True


def test_a_rich_answer_matches_the_documented_schema(push_edge):
    edge = push_edge(3)
    edge.set_state("s2", "maint")
    edge.set_state("s3", "maint")
    with open_websockets(edge.haproxy.frontend_ws_url, 4):
        edge.set_state("s3", "ready")
        edge.wait_up("s3")
        edge.set_state("s1", "drain")
        assert edge.collect().ok
        body = edge.api()
    assert [d["server"] for d in body["drains"]] == ["s1", "s2"]
    document = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    schema = {"$ref": "#/components/schemas/PushConnections"}
    assert schema_errors(body, schema, document) == []
    assert {i["state"] for i in instances_of(body).values()} == {"drain", "maint", "up"}
