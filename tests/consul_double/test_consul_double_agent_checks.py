"""Checks registered over HTTP run as an agent runs them: TTLs expire, HTTP and TCP probe."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import consul
import pytest
import requests

from demo.consul import ConsulDouble

TIMEOUT_S = 15.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def check_of(client: consul.Consul, service: str) -> dict:
    return client.health.checks(service)[1][0]


class HealthServer:
    """A real HTTP server whose /health answers the status code the test sets."""

    def __init__(self) -> None:
        self.status, self.body = 200, b"ok"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.close()


# ----- TTL ------------------------------------------------------------------------------------


def test_ttl_pass_warn_and_fail_set_the_status_and_the_note(client):
    client.agent.service.register("api", service_id="api-1", port=1, check=consul.Check.ttl("60s"))

    client.agent.check.ttl_pass("service:api-1", "all good")
    passed = check_of(client, "api")
    client.agent.check.ttl_warn("service:api-1", "slow")
    warned = check_of(client, "api")
    client.agent.check.ttl_fail("service:api-1", "down")
    failed = check_of(client, "api")

    assert (passed["Status"], passed["Output"]) == ("passing", "all good")
    assert (warned["Status"], warned["Output"]) == ("warning", "slow")
    assert (failed["Status"], failed["Output"]) == ("critical", "down")


def test_a_ttl_check_not_updated_in_time_turns_critical(client, double):
    client.agent.service.register("api", service_id="api-1", port=1, check=consul.Check.ttl("1s"))
    client.agent.check.ttl_pass("service:api-1", "ok")
    index, _ = client.health.service("api")

    # The expiry wakes a blocking query, as a real agent's update would.
    new_index, entries = client.health.service("api", index=index, wait="30s")

    check = entries[0]["Checks"][1]
    assert int(new_index) > int(index)
    assert check["Status"] == "critical"
    assert check["Output"] == "TTL expired (last output before timeout follows): ok"


def test_the_update_endpoint_takes_status_and_output(double, client):
    client.agent.service.register("api", service_id="api-1", port=1, check=consul.Check.ttl("60s"))

    ok = requests.put(
        f"{double.url}/v1/agent/check/update/service:api-1",
        json={"Status": "warning", "Output": "queue deep"},
        timeout=5,
    )
    bad = requests.put(
        f"{double.url}/v1/agent/check/update/service:api-1", json={"Status": "up"}, timeout=5
    )

    assert ok.status_code == 200
    assert (check_of(client, "api")["Status"], check_of(client, "api")["Output"]) == (
        "warning",
        "queue deep",
    )
    assert (bad.status_code, bad.text) == (400, "Invalid check status: 'up'")


def test_only_ttl_checks_take_updates_and_unknown_ids_are_404(double, client, health_server):
    client.agent.service.register(
        "web", service_id="web-1", port=1, check=consul.Check.http(health_server.url, "10s")
    )

    not_ttl = requests.put(f"{double.url}/v1/agent/check/pass/service:web-1", timeout=5)
    unknown = requests.put(f"{double.url}/v1/agent/check/pass/nope", timeout=5)

    assert (not_ttl.status_code, not_ttl.text) == (
        400,
        'CheckID "service:web-1" does not have associated TTL',
    )
    assert unknown.status_code == 404
    assert unknown.text.startswith('Unknown check ID "nope"')


def test_an_output_beyond_four_kib_is_cut(client):
    client.agent.service.register("api", service_id="api-1", port=1, check=consul.Check.ttl("60s"))

    client.agent.check.ttl_pass("service:api-1", "x" * 5000)

    output = check_of(client, "api")["Output"]
    assert output.startswith("x" * 4096)
    assert output.endswith("(captured 4096 of 5000 bytes)")


def test_a_ttl_update_needs_write_on_the_service(make_client):
    with ConsulDouble(acl_token="mgmt") as double:
        admin = make_client(double, token="mgmt")
        admin.agent.service.register(
            "api", service_id="api-1", port=1, check=consul.Check.ttl("60s")
        )
        reader = double.create_acl_token(rules={"service": {"api": "read"}})

        with pytest.raises(consul.ACLPermissionDenied, match="'service:write' on \"api\""):
            make_client(double, token=reader).agent.check.ttl_pass("service:api-1")


# ----- HTTP and TCP ---------------------------------------------------------------------------


def test_an_http_check_probes_its_url_and_follows_the_answer(client, health_server):
    client.agent.service.register(
        "web", service_id="web-1", port=1, check=consul.Check.http(health_server.url, "1s")
    )

    wait_for(lambda: check_of(client, "web")["Status"] == "passing", "the first probe")
    assert check_of(client, "web")["Output"] == f"HTTP GET {health_server.url}: 200 OK Output: ok"
    health_server.status, health_server.body = 429, b"busy"
    wait_for(lambda: check_of(client, "web")["Status"] == "warning", "429 to warn")
    health_server.status, health_server.body = 503, b"down"
    wait_for(lambda: check_of(client, "web")["Status"] == "critical", "503 to fail")
    assert "503 Service Unavailable Output: down" in check_of(client, "web")["Output"]


def test_a_tcp_check_passes_while_something_listens(client):
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    client.agent.service.register(
        "db", service_id="db-1", port=1, check={"TCP": address, "Interval": "1s"}
    )

    wait_for(lambda: check_of(client, "db")["Status"] == "passing", "the first probe")
    assert check_of(client, "db")["Output"] == f"TCP connect {address}: Success"
    listener.close()
    wait_for(lambda: check_of(client, "db")["Status"] == "critical", "the port to close")
    assert check_of(client, "db")["Output"] == f"dial tcp {address}: connect: connection refused"


# ----- agent check register / deregister ------------------------------------------------------


def test_an_agent_check_registers_on_the_agents_node_and_takes_ttl_updates(client, double):
    assert client.agent.check.register("disk", check=consul.Check.ttl("60s"), notes="df -h")

    (check,) = [c for c in client.health.node(double.node_name)[1] if c["CheckID"] == "disk"]
    assert (check["ServiceID"], check["Status"], check["Notes"]) == ("", "critical", "df -h")
    client.agent.check.ttl_pass("disk", "42% used")
    assert [
        c["Output"] for c in client.health.node(double.node_name)[1] if c["CheckID"] == "disk"
    ] == ["42% used"]


def test_an_agent_check_can_belong_to_a_service(client):
    client.agent.service.register("api", service_id="api-1", port=1)

    client.agent.check.register(
        "api deep", check=consul.Check.ttl("60s"), check_id="deep", service_id="api-1"
    )

    assert [(c["CheckID"], c["ServiceName"]) for c in client.health.checks("api")[1]] == [
        ("deep", "api")
    ]


def test_agent_check_deregister_removes_it(client, double):
    client.agent.check.register("disk", check=consul.Check.ttl("60s"))

    assert client.agent.check.deregister("disk")

    assert "disk" not in double.catalog.checks[double.node_name]
    missing = requests.put(f"{double.url}/v1/agent/check/deregister/disk", timeout=5)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"TTL": "10s"}', "Missing check name"),
        ('{"Name": "c", "TTL": "10s", "ServiceID": "nope"}', 'ServiceID "nope" does not exist'),
        ('{"Name": "c", "HTTP": "http://x/"}', "Invalid check: Interval must be > 0"),
    ],
)
def test_a_bad_agent_check_is_a_400(double, body, message):
    response = requests.put(f"{double.url}/v1/agent/check/register", data=body, timeout=5)

    assert response.status_code == 400
    assert message in response.text


def test_a_node_check_needs_node_write(make_client):
    with ConsulDouble(acl_token="mgmt") as double:
        services = double.create_acl_token(rules={"service_prefix": {"": "write"}})

        with pytest.raises(consul.ACLPermissionDenied, match="'node:write'"):
            make_client(double, token=services).agent.check.register(
                "disk", check=consul.Check.ttl("9s")
            )
