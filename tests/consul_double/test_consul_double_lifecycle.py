"""Stopping the double looks like the agent going away; starting it again brings it back."""

from __future__ import annotations

import time

import pytest
import requests

from demo.consul import ConsulDouble


def test_stop_ends_a_pending_blocking_query_with_a_connection_error(client, fleet, double, later):
    index, _ = client.health.service("orders")

    with later(0.2, double.stop) as change, pytest.raises(requests.ConnectionError):
        client.health.service("orders", index=index, wait="30s")

    # It ended with the stop, long before its 30 s wait.
    assert time.monotonic() - change.ran_at < 5


def test_a_stopped_double_refuses_connections(client, double):
    double.stop()

    with pytest.raises(requests.ConnectionError):
        client.catalog.services()


def test_start_after_stop_listens_on_the_same_port_with_the_same_state(client, fleet, double):
    port = double.port
    index, _ = client.health.service("orders")
    double.stop()
    double.set_check("service:orders-1", "critical", "changed while the agent was away")

    double.start()
    new_index, entries = client.health.service("orders")

    assert double.port == port
    assert int(new_index) > int(index)
    assert entries[0]["Checks"][1]["Status"] == "critical"


def test_an_idle_keep_alive_connection_is_closed_by_stop(double):
    with requests.Session() as session:
        assert session.get(f"{double.url}/v1/status/leader", timeout=5).ok
        double.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{double.url}/v1/status/leader", timeout=5)


def test_starting_twice_is_an_error(double):
    with pytest.raises(RuntimeError, match="already serving"):
        double.start()


def test_the_context_manager_starts_and_stops():
    with ConsulDouble() as running:
        url = running.url
        assert requests.get(f"{url}/v1/status/leader", timeout=5).json() == "127.0.0.1:8300"

    assert not running.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v1/status/leader", timeout=5)
