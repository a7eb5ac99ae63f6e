"""The demo fleet's instances are real processes, registered in Consul with checks that probe."""

from __future__ import annotations

import http.client
import urllib.request

import consul

from demo.fleet.topology import FLEET
from tests.demo.conftest import check_statuses, get_json, get_text, metric_sum
from tests.fixtures.processes import wait_for


def test_every_instance_registers_with_its_real_port_and_a_passing_http_check(
    healthy_fleet, fleet_consul
):
    # An instance registers its check as it finds itself; then the agent's probes report.
    wait_for(
        lambda: all(
            check_statuses(fleet_consul)[i.instance_id]["Output"].startswith("HTTP GET")
            for i in healthy_fleet.instances
        ),
        "every check probed",
        20,
    )
    client = consul.Consul(host=fleet_consul.host, port=fleet_consul.port)
    try:
        for service in FLEET:
            _, entries = client.health.service(service.name)
            registered = {e["Service"]["ID"]: e for e in entries}
            planned = [i for i in healthy_fleet.instances if i.service == service.name]
            assert sorted(registered) == sorted(i.instance_id for i in planned)
            for instance in planned:
                entry = registered[instance.instance_id]
                assert (entry["Service"]["Address"], entry["Service"]["Port"]) == (
                    "127.0.0.1",
                    instance.port,
                )
                assert entry["Service"]["Meta"]["version"] == instance.version
                (check,) = [c for c in entry["Checks"] if c["ServiceID"] == instance.instance_id]
                assert check["Status"] == "passing"
                # The double's agent really probed the instance's own /health.
                assert check["Output"].startswith(
                    f"HTTP GET http://127.0.0.1:{instance.port}/health: 200 OK"
                )
                # And the instance is really there, answering on that port.
                assert get_text(f"{instance.url}/health")
    finally:
        client.http.session.close()


def test_the_canary_runs_its_own_version_and_says_so_in_its_tags(healthy_fleet, fleet_consul):
    (canary,) = [i for i in healthy_fleet.instances if i.canary]
    entries = get_json(f"{fleet_consul.url}/v1/health/service/{canary.service}")
    (entry,) = [e for e in entries if e["Service"]["ID"] == canary.instance_id]
    assert "canary" in entry["Service"]["Tags"]
    assert entry["Service"]["Meta"]["version"] == canary.version != "2.4.1"
    assert canary.version in get_text(f"{canary.url}/health")


def charges(fleet) -> float:
    """Return how many /charge requests the payments instances have answered."""
    return sum(
        metric_sum(
            get_text(f"{i.url}/metrics"),
            "http_server_request_duration_seconds_count",
            http_route="/charge",
        )
        for i in fleet.instances
        if i.service == "payments"
    )


def test_a_checkout_through_the_gateway_reaches_payments_and_is_counted(healthy_fleet):
    (gateway,) = healthy_fleet.gateway_urls()[:1]
    # Orders finds payments through Consul: wait until every hop knows its upstreams.
    wait_for(lambda: _checkout(gateway) == 200, "a checkout going through", 30)
    before = charges(healthy_fleet)
    answers = [_checkout(gateway) for _ in range(10)]
    succeeded = answers.count(200)
    assert succeeded >= 5, answers
    # Each checkout that succeeded made exactly one real call to a payments instance.
    assert charges(healthy_fleet) - before >= succeeded
    gateway_metrics = "".join(
        get_text(f"{i.url}/metrics") for i in healthy_fleet.instances if i.service == "gateway"
    )
    assert (
        metric_sum(
            gateway_metrics,
            "http_server_request_duration_seconds_count",
            http_route="/api/checkout",
            http_request_method="GET",
            http_response_status_code="200",
        )
        >= succeeded
    )
    # The client side is measured too, per callee address.
    orders_metrics = "".join(
        get_text(f"{i.url}/metrics") for i in healthy_fleet.instances if i.service == "orders"
    )
    payments_ports = {str(i.port) for i in healthy_fleet.instances if i.service == "payments"}
    assert (
        sum(
            metric_sum(
                orders_metrics, "http_client_request_duration_seconds_count", server_port=port
            )
            for port in payments_ports
        )
        >= succeeded
    )


def _checkout(base: str) -> int:
    request = urllib.request.Request(f"{base}/api/checkout")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code
    except (OSError, http.client.HTTPException):
        return 0


def test_an_instance_in_fault_goes_critical_through_its_real_check_then_heals(
    healthy_fleet, fleet_consul
):
    healthy_fleet.fault("payments-2", "unhealthy")
    check = wait_for(
        lambda: (c := check_statuses(fleet_consul)["payments-2"])["Status"] == "critical" and c,
        "payments-2 critical",
        20,
    )
    port = healthy_fleet.instance("payments-2").port
    assert check["Output"].startswith(
        f"HTTP GET http://127.0.0.1:{port}/health: 503 Service Unavailable"
    )
    assert check_statuses(fleet_consul)["payments-1"]["Status"] == "passing"
    healthy_fleet.heal("payments-2")
    wait_for(
        lambda: check_statuses(fleet_consul)["payments-2"]["Status"] == "passing",
        "payments-2 passing again",
        20,
    )


def test_a_killed_instance_is_refused_by_its_check_then_restarted(healthy_fleet, fleet_consul):
    before = healthy_fleet.pids()["inventory-1"]
    port = healthy_fleet.instance("inventory-1").port
    healthy_fleet.restart_after_s = 10.0
    try:
        healthy_fleet.crash("inventory-1")
        # Killed outright, it could not deregister: its check finds nothing listening.
        check = wait_for(
            lambda: (
                (c := check_statuses(fleet_consul)["inventory-1"])["Status"] == "critical" and c
            ),
            "inventory-1 critical",
            20,
        )
        assert check["Output"] == (
            f'GET "http://127.0.0.1:{port}/health": connect: connection refused'
        )
    finally:
        healthy_fleet.restart_after_s = 1.0
    # The fleet starts it again, on the same port, and its check passes once more.
    wait_for(
        lambda: healthy_fleet.pids().get("inventory-1") not in (None, before),
        "inventory-1 restarted",
        30,
    )
    wait_for(
        lambda: check_statuses(fleet_consul)["inventory-1"]["Status"] == "passing",
        "inventory-1 passing again",
        30,
    )
