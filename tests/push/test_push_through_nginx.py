"""Push connections through a real nginx: a total per balancer, no per-server count, said so."""

from __future__ import annotations

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import NginxConfig
from app.factory import create_app
from tests.fixtures.websocket import open_websockets


def test_nginx_shows_its_total_and_says_it_cannot_count_per_server(
    nginx_factory, websocket_server_factory, make_qd, make_token
):
    servers = [websocket_server_factory() for _ in range(3)]
    nginx = nginx_factory(
        [
            f"{servers[0].address} weight=3 max_fails=3 fail_timeout=30s",
            f"{servers[1].address} weight=1",
            f"{servers[2].address} down",
        ],
        upstream="push_backend",
    )
    config = NginxConfig(name="push", status_url=nginx.status_url,
                         upstream_conf=str(nginx.upstream_conf))  # fmt: skip
    qd = make_qd(nginx=(config,))
    [source] = [s for s in configured_sources(qd.config, qd.clock) if s.kind == "nginx"]
    client = create_app(qd=qd).test_client()
    auth = {"Authorization": f"Bearer {make_token('reader', 'viewer')}"}

    assert run_pass(qd, source.collector).ok
    before = client.get("/api/v1/push/connections", headers=auth).json["balancers"][0]
    with open_websockets(nginx.ws_url, 5):
        assert run_pass(qd, source.collector).ok
        body = client.get("/api/v1/push/connections", headers=auth).json
        html = client.get("/push", headers=auth).get_data(as_text=True)

    [balancer] = body["balancers"]
    assert (balancer["balancer"], balancer["kind"], balancer["per_server"]) == (
        "push",
        "nginx",
        False,
    )
    assert balancer["connections"] == before["connections"] + 5
    assert "not per server" in balancer["note"]
    # Its members are listed, uncounted: unknown, never 0.
    [service] = body["by_service"]
    assert service["service"] == "push_backend" and service["total"] is None
    assert all(i["connections"] is None and i["source"] is None for i in service["instances"])
    assert body["total"] is None
    assert "only their totals" in body["uncounted_reason"]
    # The `down` server is a drain nobody can count.
    [drain] = body["drains"]
    assert (drain["state"], drain["connections"], drain["time_left_s"]) == ("down", None, None)

    assert 'data-balancer="push"' in html
    assert "total only: nginx OSS does not count per server" in html
    assert "no count for this server" in html
    assert 'id="push-uncounted"' in html
