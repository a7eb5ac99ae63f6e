"""A real HAProxy in front of real WebSocket servers, as the API and the Services page show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import HAProxyConfig, StaticServiceConfig
from app.factory import create_app
from app.models import Balancer
from tests.conftest import sign_in
from tests.fixtures.haproxy import Member
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets
from tests.web.test_openapi import assert_matches

CONNECTIONS = 6


@pytest.fixture
def edge(make_qd, make_token, make_user, haproxy_factory, websocket_server_factory):
    """HAProxy `edge` over three push servers (two in the catalog), plus a balancer-only backend."""
    one, two, three, old, stray = (websocket_server_factory() for _ in range(5))
    haproxy = haproxy_factory(
        [one.address, two.address, Member(three.address, name="push-3")],
        backend="push-be",
        http_check="/health",
        more_backends={
            "legacy": [Member(old.address, name="old1", weight=5)],
            # Named like the catalog's service: its unmatched member cannot be counted in it.
            "push": [Member(stray.address, name="stray")],
        },
    )
    qd = make_qd(
        static_services=(StaticServiceConfig(name="push", instances=(one.address, two.address)),),
        haproxy=(
            HAProxyConfig(
                name="edge", stats_url=haproxy.stats_csv_url, runtime=haproxy.runtime_url
            ),
        ),
    )
    sources = {s.name: s for s in configured_sources(qd.config, qd.clock)}
    client = create_app(qd=qd).test_client()
    token = make_token("reader", "viewer")

    class Edge:
        servers = (one, two, three, old)

        @staticmethod
        def collect():
            assert run_pass(qd, sources["static"].collector).ok
            return run_pass(qd, sources["edge"].collector)

        @staticmethod
        def get(path):
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.get_data(as_text=True)
            return response.json

        def lb(self, service="push"):
            body = self.get(f"/api/v1/services/{service}")
            return {i["id"]: i["lb"] for i in body["instances"]}

    edge = Edge()
    edge.haproxy, edge.qd, edge.client, edge.make_user = haproxy, qd, client, make_user
    edge.token = token

    def all_up():
        assert edge.collect().ok
        rows = [
            row
            for name in ("push", "push-be", "legacy")
            for rows in edge.lb(name).values()
            for row in rows
        ]
        return len(rows) == 5 and all(row["status"] == "UP" for row in rows)

    wait_for(all_up, "every push server up")
    return edge


def test_websocket_connections_through_haproxy_show_per_server_and_in_total(edge):
    one, two, three, _ = edge.servers
    with open_websockets(edge.haproxy.frontend_ws_url, CONNECTIONS):
        assert edge.collect().ok
        lb, lb_be = edge.lb(), edge.lb("push-be")
        held = {one.address: one.open_connections, two.address: two.open_connections,
                "push-3": three.open_connections, "stray": 0}  # fmt: skip
        with edge.qd.store.session() as db:
            active = db.scalar(select(Balancer.active).where(Balancer.name == "edge"))

    sessions = {instance: rows[0]["sessions"] for instance, rows in {**lb, **lb_be}.items()}
    assert sessions == held  # each server's own count of the connections it holds
    assert sum(sessions.values()) == CONNECTIONS
    assert active == CONNECTIONS  # the frontend's sessions
    row = lb[one.address][0]
    assert (row["balancer"], row["backend"], row["server"]) == ("edge", "push-be", "s1")
    assert (row["status"], row["weight"], row["check_status"]) == ("UP", 1, "L7OK")
    assert row["stale"] is False and row["observed_at"].endswith("Z")


def test_a_server_failing_its_check_shows_down_and_a_drain_shows_drain(edge):
    one, two, *_ = edge.servers
    one.failing = True

    def s1_down():
        assert edge.collect().ok
        return edge.lb()[one.address][0]["status"] == "DOWN"

    wait_for(s1_down, "s1 DOWN in the API")
    assert edge.haproxy.send_runtime("set server push-be/s2 state drain").strip() == ""
    assert edge.collect().ok
    lb = edge.lb()

    assert (lb[one.address][0]["state"], lb[one.address][0]["check_status"]) == ("down", "L7STS")
    assert (lb[two.address][0]["state"], lb[two.address][0]["status"]) == ("drain", "DRAIN")


def test_killing_haproxy_leaves_its_last_data_stale_with_its_age_not_zero(edge):
    with open_websockets(edge.haproxy.frontend_ws_url, CONNECTIONS):
        assert edge.collect().ok
        before = edge.lb()
        edge.haproxy.stop()
    result = edge.collect()

    assert not result.ok and "runtime API" in result.error
    after = edge.lb()
    sessions = lambda lb: sum(rows[0]["sessions"] for rows in lb.values())  # noqa: E731
    assert sessions(after) == sessions(before) > 0
    row = next(iter(after.values()))[0]
    assert row["stale"] is True and row["age_s"] >= 0
    assert row["observed_at"] == next(iter(before.values()))[0]["observed_at"]
    sources = {s["name"]: s for s in edge.get("/api/v1/sources")["sources"]}
    assert sources["edge"]["status"] == "error" and "runtime API" in sources["edge"]["last_error"]


def test_unmatched_members_are_services_named_like_their_backend_and_matched_ones_are_not(edge):
    services = {s["name"]: s for s in edge.get("/api/v1/services")["services"]}

    # s1 and s2 are catalog instances of "push"; push-3 matches none, so "push-be" has it alone.
    assert services["push-be"]["source"] == "edge"
    assert services["push-be"]["instances"]["total"] == 1
    assert services["legacy"]["source"] == "edge"
    assert services["legacy"]["health"] == "passing"
    assert set(edge.lb("push-be")) == {"push-3"}
    legacy = edge.get("/api/v1/services/legacy")
    [old1] = legacy["instances"]
    assert (old1["id"], old1["lb"][0]["weight"], old1["health"]) == ("old1", 5, "passing")
    push = edge.get("/api/v1/services/push")
    assert sorted((i.get("source") or "", i["id"]) for i in push["instances"]) == sorted(
        [("", edge.servers[0].address), ("", edge.servers[1].address), ("edge", "stray")]
    )
    assert push["instances"][-1]["id"] == "stray"  # after the catalog's own instances
    assert push["instances"][2]["lb"][0]["backend"] == "push"
    assert services["push"]["source"] == "static" and services["push"]["instances"]["total"] == 2

    sign_in(edge.client, edge.make_user("vera"))
    page = edge.client.get("/services").get_data(as_text=True)
    assert 'data-service="legacy"' in page and 'data-service="push-be"' in page
    detail = edge.client.get("/services/legacy").get_data(as_text=True)
    assert "old1" in detail


def test_a_balancer_only_member_put_in_maintenance_shows_as_maintenance(edge):
    edge.haproxy.send_runtime("set server legacy/old1 state maint")
    assert edge.collect().ok
    legacy = edge.get("/api/v1/services/legacy")

    assert legacy["instances"][0]["health"] == "maintenance"
    assert legacy["instances"][0]["lb"][0]["status"] == "MAINT"


def test_the_answers_with_balancer_rows_match_the_openapi_document(edge):
    document = json.loads((Path(__file__).parents[2] / "static" / "openapi.json").read_text())
    client, headers = edge.client, {"Authorization": f"Bearer {edge.token}"}
    for name in ("push", "push-be", "legacy"):
        assert_matches(
            document,
            "/api/v1/services/{name}",
            client.get(f"/api/v1/services/{name}", headers=headers),
        )
    assert_matches(document, "/api/v1/services", client.get("/api/v1/services", headers=headers))
