"""A real nginx → collector → run_pass → balancer store → /api/v1/services and /api/v1/sources."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import NginxConfig, StaticServiceConfig
from app.factory import create_app
from app.models import Balancer, BalancerMember
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets

pytestmark = pytest.mark.parametrize("app_store_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def push_nginx(nginx_factory, websocket_server_factory):
    """nginx in front of four WebSocket servers, with the seed's upstream lines."""
    servers = [websocket_server_factory() for _ in range(4)]
    nginx = nginx_factory(
        [
            f"{servers[0].address} weight=3 max_fails=3 fail_timeout=30s",
            f"{servers[1].address} weight=1",
            f"{servers[2].address} down",
            f"{servers[3].address} backup",
        ],
        upstream="push_backend",
        head=["least_conn"],
    )
    return nginx, servers


def nginx_source(qd):
    [source] = [s for s in configured_sources(qd.config, qd.clock) if s.kind == "nginx"]
    return source.collector


def held_totals(qd) -> tuple[int | None, bool]:
    with qd.store.session() as db:
        row = db.execute(select(Balancer).where(Balancer.name == "push")).scalar_one()
        return row.active, row.per_server_sessions


def api(client, token, path):
    answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json


def test_nginx_members_connections_and_outage_through_the_api(push_nginx, make_qd, make_token):
    nginx, servers = push_nginx
    qd = make_qd(
        nginx=(
            NginxConfig(
                name="push", status_url=nginx.status_url, upstream_conf=str(nginx.upstream_conf)
            ),
        )
    )
    collector = nginx_source(qd)
    token = make_token("reader", "viewer")
    client = create_app(qd=qd).test_client()

    first = run_pass(qd, collector)
    assert first.ok, first.error
    assert first.counts["members"] == 4

    # Unmatched members are the service named like their upstream, from the balancer.
    services = {s["name"]: s for s in api(client, token, "/api/v1/services")["services"]}
    push = services["push_backend"]
    assert push["source"] == "push" and push["stale"] is False
    assert push["instances"]["total"] == 4
    assert push["instances"]["critical"] == 1  # the `down` server
    detail = api(client, token, "/api/v1/services/push_backend")
    by_id = {i["id"]: i for i in detail["instances"]}
    assert set(by_id) == {s.address for s in servers}
    assert by_id[servers[2].address]["health"] == "critical"
    assert by_id[servers[0].address]["port"] == servers[0].port
    lb = {server.address: by_id[server.address]["lb"] for server in servers}
    assert all(len(rows) == 1 for rows in lb.values())
    assert [
        (r["balancer"], r["kind"], r["backend"], r["state"], r["status"], r["weight"], r["backup"])
        for rows in lb.values()
        for r in rows
    ] == [
        ("push", "nginx", "push_backend", "up", "", 3, False),
        ("push", "nginx", "push_backend", "up", "", 1, False),
        ("push", "nginx", "push_backend", "down", "down", 1, False),
        ("push", "nginx", "push_backend", "up", "backup", 1, True),
    ]
    # nginx OSS cannot count per server: unknown, never 0.
    assert all(r["sessions"] is None and r["stale"] is False for rows in lb.values() for r in rows)

    sources = {s["name"]: s for s in api(client, token, "/api/v1/sources")["sources"]}
    assert sources["push"]["status"] == "ok" and sources["push"]["kind"] == "nginx"
    warnings = {w["kind"]: w["message"] for w in sources["push"]["warnings"]}
    assert "connection totals only" in warnings["totals_only"]
    assert "no active health checks" in warnings["configured_state"]

    with qd.store.session() as db:
        members = db.execute(select(BalancerMember).order_by(BalancerMember.port)).scalars()
        assert all(m.sessions is None for m in members)
    before, per_server = held_totals(qd)
    assert per_server is False

    with open_websockets(nginx.ws_url, 5):
        assert run_pass(qd, collector).ok
        assert held_totals(qd)[0] == before + 5
        # least_conn never picks the down server nor, while primaries are up, the backup.
        assert (servers[2].open_connections, servers[3].open_connections) == (0, 0)

    def back_to_before():
        assert run_pass(qd, collector).ok
        return held_totals(qd)[0] == before

    wait_for(back_to_before, "the held total to fall back")

    nginx.stop()
    failed = run_pass(qd, collector)
    assert not failed.ok and "cannot reach stub_status" in failed.error

    sources = {s["name"]: s for s in api(client, token, "/api/v1/sources")["sources"]}
    assert sources["push"]["status"] == "error"
    assert "cannot reach stub_status" in sources["push"]["last_error"]
    assert sources["push"]["last_success_at"] is not None
    # Stale, never zero: the last figures stay, the members stay listed.
    assert held_totals(qd)[0] == before
    services = {s["name"]: s for s in api(client, token, "/api/v1/services")["services"]}
    assert services["push_backend"]["instances"]["total"] == 4
    assert services["push_backend"]["stale"] is True
    detail = api(client, token, "/api/v1/services/push_backend")
    assert all(i["lb"][0]["stale"] is True for i in detail["instances"])
    assert {i["id"] for i in detail["instances"]} == {s.address for s in servers}


def test_nginx_members_matched_to_catalog_instances_appear_under_them(
    push_nginx, make_qd, make_token
):
    nginx, servers = push_nginx
    catalog = StaticServiceConfig(name="push", instances=(servers[0].address, servers[1].address))
    qd = make_qd(
        static_services=(catalog,),
        nginx=(
            NginxConfig(
                name="edge-nginx",
                status_url=nginx.status_url,
                upstream_conf=str(nginx.upstream_conf),
            ),
        ),
    )
    for source in configured_sources(qd.config, qd.clock):
        assert run_pass(qd, source.collector).ok
    token = make_token("reader", "viewer")
    client = create_app(qd=qd).test_client()

    push = api(client, token, "/api/v1/services/push")
    by_id = {i["id"]: i for i in push["instances"]}
    assert set(by_id) == {servers[0].address, servers[1].address}
    assert [(r["balancer"], r["server"], r["weight"]) for r in by_id[servers[0].address]["lb"]] == [
        ("edge-nginx", servers[0].address, 3)
    ]
    # The unmatched members (down and backup) are the upstream's own service, and only they.
    backend = api(client, token, "/api/v1/services/push_backend")
    assert {i["id"] for i in backend["instances"]} == {servers[2].address, servers[3].address}
