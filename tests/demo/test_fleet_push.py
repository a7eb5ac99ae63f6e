"""Push holds real WebSocket connections, direct and through nginx and HAProxy, and counts them."""

from __future__ import annotations

import csv
import io
import signal

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from demo.fleet.children import Child, python_argv
from tests.demo.conftest import get_text, metric_sum
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets


def push_gauges(fleet) -> dict[str, float]:
    """Return each push instance's push_connections_active, read from its own /metrics."""
    return {
        i.instance_id: metric_sum(
            get_text(f"{i.url}/metrics"), "push_connections_active", instance=i.instance_id
        )
        for i in fleet.instances
        if i.service == "push"
    }


def test_push_holds_websocket_connections_and_its_gauge_says_how_many(healthy_fleet):
    push_1 = healthy_fleet.instance("push-1")
    before = push_gauges(healthy_fleet)["push-1"]
    with open_websockets(f"ws://{push_1.address}/ws", 12) as clients:
        assert len(clients) == 12
        wait_for(
            lambda: push_gauges(healthy_fleet)["push-1"] == before + 12, "push-1 counting 12", 10
        )
    wait_for(lambda: push_gauges(healthy_fleet)["push-1"] == before, "push-1 back", 10)


def haproxy_push_servers(fleet) -> dict[str, dict]:
    """HAProxy's rows for the push servers, by server name."""
    rows = csv.DictReader(io.StringIO(get_text(fleet.haproxy_stats_url)[2:]))
    return {
        r["svname"]: r for r in rows if r["pxname"] == "push" and r["svname"].startswith("push-")
    }


def test_connections_through_nginx_and_haproxy_reach_push(healthy_fleet):
    nginx_url, haproxy_url = healthy_fleet.push_urls()
    assert f":{healthy_fleet.nginx_ports.push}/" in nginx_url
    # Consul's checks pass first; HAProxy's own (rise 2, every 2 s) may still say DOWN.
    wait_for(
        lambda: all(r["status"] == "UP" for r in haproxy_push_servers(healthy_fleet).values()),
        "HAProxy sending to every push server",
        30,
    )
    before = sum(push_gauges(healthy_fleet).values())
    with open_websockets(nginx_url, 5), open_websockets(haproxy_url, 4):
        wait_for(
            lambda: sum(push_gauges(healthy_fleet).values()) == before + 9, "9 more on push", 10
        )
        # nginx counts its client connections (the status request itself is one more).
        status = get_text(healthy_fleet.nginx_status_url)
        assert int(status.split("Active connections:")[1].split()[0]) >= 6
        # HAProxy holds the other four as current sessions on the push servers.
        sessions = sum(int(r["scur"]) for r in haproxy_push_servers(healthy_fleet).values())
        assert sessions == 4


def test_the_traffic_generator_keeps_clients_connected_and_calls_the_gateway(
    healthy_fleet, tmp_path
):
    argv = python_argv(
        "demo.fleet.traffic",
        *[w for url in healthy_fleet.gateway_urls() for w in ("--http", url)],
        *[w for url in healthy_fleet.push_urls() for w in ("--ws", url)],
        "--rps",
        5,
        "--clients",
        30,
        "--mean-session-s",
        4,
    )
    traffic = Child("traffic", argv, tmp_path / "traffic.log", tmp_path).start()
    before = sum(push_gauges(healthy_fleet).values())

    def checkouts() -> float:
        return sum(
            metric_sum(
                get_text(f"{i.url}/metrics"),
                "http_server_request_duration_seconds_count",
                http_route="/api/checkout",
            )
            for i in healthy_fleet.instances
            if i.service == "gateway"
        )

    try:
        calls = checkouts()
        # Clients connect (and, staying ~4 s each, leave and come back: the count churns).
        wait_for(
            lambda: sum(push_gauges(healthy_fleet).values()) >= before + 20,
            "the traffic's clients connected",
            30,
        )
        wait_for(lambda: checkouts() > calls, "checkouts through the gateway", 30)
        assert traffic.running, traffic.log_tail()
    finally:
        traffic.signal(signal.SIGTERM)
        traffic.process.wait(timeout=15)
    assert traffic.returncode == 0, traffic.log_tail()
    wait_for(lambda: sum(push_gauges(healthy_fleet).values()) == before, "the clients gone", 20)


def test_push_in_fault_drops_its_connections_and_refuses_new_ones(healthy_fleet):
    push_2 = healthy_fleet.instance("push-2")
    url = f"ws://{push_2.address}/ws"
    with open_websockets(url, 3) as clients:
        wait_for(lambda: push_gauges(healthy_fleet)["push-2"] >= 3, "push-2 holding 3", 10)
        healthy_fleet.fault("push-2", "drop", "refuse")
        for client in clients:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    client.recv(timeout=10)
            assert closed.value.rcvd.code == 1012  # "service restart": come back later
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=5).close()
        assert refused.value.response.status_code == 503
    wait_for(lambda: push_gauges(healthy_fleet)["push-2"] == 0, "push-2 empty", 10)
    healthy_fleet.heal("push-2")
    with open_websockets(url, 1):
        pass
