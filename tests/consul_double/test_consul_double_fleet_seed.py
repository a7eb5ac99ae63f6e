"""The seeded fleets: a realistic demo mesh, and a large fleet loaded in one go."""

from __future__ import annotations

import json
import time

from demo.consul import ConsulDouble
from demo.fleet_seed import seed_demo_fleet, seed_scale


def test_the_demo_fleet_has_five_services_with_version_owner_and_links(client, fleet):
    assert {i.service for i in fleet} == {"gateway", "orders", "payments", "inventory", "push"}
    assert len(fleet) == 12
    assert len({i.port for i in fleet}) == len(fleet)
    for service in ("gateway", "orders", "payments", "inventory", "push"):
        _, entries = client.health.service(service)
        assert 2 <= len(entries) <= 3
        for entry in entries:
            meta = entry["Service"]["Meta"]
            assert set(meta) == {"version", "owner", "docs", "runbook"}
            assert meta["runbook"].startswith("https://")
            assert entry["Node"]["Node"] in ("node-a", "node-b", "node-c")
            assert entry["Service"]["Address"] == "127.0.0.1"


def test_every_demo_instance_starts_passing_with_an_http_check_output(client, fleet):
    _, checks = client.health.state("any")

    assert {check["Status"] for check in checks} == {"passing"}
    http = [check for check in checks if check["Type"] == "http"]
    assert len(http) == len(fleet)
    assert all(check["Output"].startswith("HTTP GET http://127.0.0.1:") for check in http)


def test_sidecar_upstreams_describe_the_mesh_edges(client, fleet):
    _, services = client.catalog.services()
    edges = set()
    for name in services:
        for row in client.catalog.service(name)[1]:
            if row["ServiceKind"] == "connect-proxy":
                proxy = row["ServiceProxy"]
                for upstream in proxy.get("Upstreams", []):
                    edges.add((proxy["DestinationServiceName"], upstream["DestinationName"]))

    assert edges == {("gateway", "orders"), ("orders", "payments"), ("orders", "inventory")}


def test_the_demo_fleet_stores_a_release_record_per_service(client, fleet):
    _, items = client.kv.get("quarterdeck/releases/", recurse=True)

    records = {item["Key"].rsplit("/", 1)[1]: json.loads(item["Value"]) for item in items}
    assert set(records) == {"gateway", "orders", "payments", "inventory", "push"}
    assert records["orders"]["active"] == "2.4.1"
    assert records["orders"]["previous"] == "2.4.0"
    assert [entry["version"] for entry in records["orders"]["history"]] == ["2.4.0", "2.4.1"]


def test_seeding_the_demo_fleet_wakes_a_waiting_watch_once_with_everything(client, double, later):
    index, _ = client.catalog.services()

    with later(0.1, lambda: seed_demo_fleet(double)):
        _, services = client.catalog.services(index=index, wait="5s")

    assert {"gateway", "orders", "payments", "inventory", "push"} <= set(services)


def test_seed_scale_loads_two_thousand_services_quickly(make_client):
    with ConsulDouble() as double:
        started = time.monotonic()
        names = seed_scale(double)
        elapsed = time.monotonic() - started
        client = make_client(double)

        _, services = client.catalog.services()
        _, entries = client.health.service(names[1234])

    assert elapsed < 5
    assert len(names) == 2000
    assert len(services) == 2001
    assert len(entries) == 5
