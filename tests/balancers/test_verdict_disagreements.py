"""The merged verdict against real sources: Consul (the double) says one thing, a real HAProxy
in front of real servers says another, and the API and the service page say so."""

from __future__ import annotations

import pytest

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import ConsulConfig, HAProxyConfig
from app.factory import create_app
from demo.consul import ConsulDouble
from tests.conftest import sign_in
from tests.fixtures.processes import wait_for


@pytest.fixture
def fleet(make_qd, make_token, make_user, haproxy_factory, websocket_server_factory):
    """push-1 and push-2 in Consul (checks passing), behind HAProxy `edge` that checks /health."""
    one, two = websocket_server_factory(), websocket_server_factory()
    double = ConsulDouble().start()
    double.register_node("node-a", "127.0.0.1")
    for number, server in ((1, one), (2, two)):
        double.register_service(
            "node-a",
            f"push-{number}",
            "push",
            address="127.0.0.1",
            port=server.port,
            checks=[{"CheckID": f"push-{number}-ws", "Name": "ws", "Status": "passing"}],
        )
    haproxy = haproxy_factory([one.address, two.address], backend="push", http_check="/health")
    qd = make_qd(
        consul=ConsulConfig(url=double.url, wait_s=1, token_env="NO_SUCH_TOKEN_VARIABLE"),
        haproxy=(HAProxyConfig(name="edge", stats_url=haproxy.stats_csv_url),),
    )
    sources = {s.name: s for s in configured_sources(qd.config, qd.clock)}
    client = create_app(qd=qd).test_client()
    headers = {"Authorization": f"Bearer {make_token('reader', 'viewer')}"}

    class Fleet:
        servers = (one, two)

        @staticmethod
        def collect():
            assert run_pass(qd, sources["consul"].collector).ok
            assert run_pass(qd, sources["edge"].collector).ok

        @staticmethod
        def service():
            response = client.get("/api/v1/services/push", headers=headers)
            assert response.status_code == 200
            return response.json

    fleet = Fleet()
    fleet.double, fleet.client, fleet.make_user = double, client, make_user
    yield fleet
    sources["consul"].collector.close()
    double.stop()
    sources["consul"].collector.close(timeout=5)


def instance(body: dict, instance_id: str) -> dict:
    [found] = [i for i in body["instances"] if i["id"] == instance_id]
    return found


def test_haproxy_marking_a_server_down_while_consul_passes_is_a_disagreement(fleet):
    fleet.collect()
    agreed = fleet.service()
    assert agreed["verdict"] == {"health": "passing", "disagreements": []}
    assert instance(agreed, "push-2")["verdict"]["health"] == "passing"

    fleet.servers[1].failing = True  # its /health answers 503: HAProxy's check fails

    def disagreement():
        fleet.collect()
        body = fleet.service()
        return body if instance(body, "push-2")["lb"][0]["state"] == "down" else None

    body = wait_for(disagreement, "HAProxy to mark push-2 DOWN")
    push_2 = instance(body, "push-2")
    assert push_2["health"] == "passing"  # Consul's own word is kept as it is
    assert push_2["verdict"]["health"] == "critical"
    [said] = push_2["verdict"]["disagreements"]
    assert said["source"] == "edge" and "DOWN" in said["says"] and said["stale"] is False
    assert body["verdict"]["health"] == "critical"
    assert [(d["instance"], d["source"]) for d in body["verdict"]["disagreements"]] == [
        ("push-2", "edge")
    ]
    assert instance(body, "push-1")["verdict"]["disagreements"] == []

    fleet.make_user("vera", "viewer")
    assert sign_in(fleet.client, "vera").status_code == 302
    page = fleet.client.get("/services/push").get_data(as_text=True)
    assert 'id="disagreements"' in page and "edge" in page and "DOWN" in page
    assert 'data-lb="edge" data-lb-state="down"' in page
    overview = fleet.client.get("/").get_data(as_text=True)
    assert 'data-disagreement-service="push" data-disagreement-source="edge"' in overview


def test_critical_in_consul_while_haproxy_still_sends_traffic(fleet):
    fleet.collect()
    fleet.double.set_check("push-1-ws", "critical", "websocket handshake timed out")

    def critical():
        fleet.collect()
        body = fleet.service()
        return body if instance(body, "push-1")["health"] == "critical" else None

    body = wait_for(critical, "Consul to report push-1 critical")
    [said] = instance(body, "push-1")["verdict"]["disagreements"]
    assert said["source"] == "edge" and said["traffic"] is True
    assert "still sends it traffic" in said["says"]
