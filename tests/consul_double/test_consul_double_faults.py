"""Injected faults reach the client the way a misbehaving agent would."""

from __future__ import annotations

import pytest
import requests
from consul.exceptions import ConsulException


def test_malformed_json_makes_py_consul_raise_a_decode_error(client, fleet, double):
    double.inject_fault("/v1/health/service/orders", "malformed_json")

    with pytest.raises(ConsulException, match="Failed to decode JSON"):
        client.health.service("orders")
    assert len(client.health.service("payments")[1]) == 2


def test_missing_fields_drops_the_service_from_health_entries(client, fleet, double):
    double.inject_fault("/v1/health/service/", "missing_fields")

    _, entries = client.health.service("orders")

    assert len(entries) == 3
    assert all("Service" not in entry and "Node" in entry for entry in entries)


def test_missing_fields_drops_the_status_from_checks(client, fleet, double):
    double.inject_fault("/v1/health/state/", "missing_fields")

    _, checks = client.health.state("any")

    assert checks and all("Status" not in check for check in checks)


def test_http_500_is_a_consul_exception(client, fleet, double):
    double.inject_fault("/v1/catalog/", "http_500")

    with pytest.raises(ConsulException, match="500 No cluster leader"):
        client.catalog.services()


def test_a_counted_fault_stops_after_its_count(client, fleet, double):
    double.inject_fault("/v1/catalog/services", "http_500", count=2)

    for _ in range(2):
        with pytest.raises(ConsulException):
            client.catalog.services()
    assert "orders" in client.catalog.services()[1]


def test_clear_faults_restores_normal_answers(client, fleet, double):
    double.inject_fault("/v1/", "http_500")
    double.clear_faults()

    assert "orders" in client.catalog.services()[1]


def test_a_disconnect_closes_the_connection_without_an_answer(client, fleet, double):
    double.inject_fault("/v1/health/", "disconnect", count=1)

    with pytest.raises(requests.ConnectionError):
        client.health.service("orders")
    assert len(client.health.service("orders")[1]) == 3


def test_index_backwards_reports_index_one(client, fleet, double):
    double.inject_fault("/v1/health/service/orders", "index_backwards", count=1)

    index, entries = client.health.service("orders")

    assert index == "1"
    assert len(entries) == 3


def test_an_unknown_fault_kind_is_refused(double):
    with pytest.raises(ValueError, match="fault kind"):
        double.inject_fault("/v1/", "slow")
