"""One real demo fleet for the demo tests: its instances, HAProxy, nginx and Prometheus."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo.consul import ConsulDouble
from demo.fleet.supervisor import DemoFleet
from tests.fixtures.processes import wait_for


@pytest.fixture(scope="session")
def fleet_consul() -> Iterator[ConsulDouble]:
    """The Consul double the test fleet registers in."""
    double = ConsulDouble().start()
    yield double
    double.stop()


@pytest.fixture(scope="session")
def demo_fleet(fleet_consul, tmp_path_factory) -> Iterator[DemoFleet]:
    """A fleet with quick checks and scrapes, and no traffic of its own (tests make it)."""
    fleet = DemoFleet(
        tmp_path_factory.mktemp("fleet"),
        fleet_consul.url,
        check_interval="1s",
        scrape_interval="1s",
        clients=0,
        rps=0,
        restart_after_s=1.0,
    )
    fleet.start()
    try:
        if not fleet.wait_ready(90):
            logs = {p.name: p.read_text()[-2000:] for p in fleet.logs_dir.glob("*.log")}
            pytest.fail(f"the demo fleet did not come up: {logs}", pytrace=False)
        yield fleet
    finally:
        fleet.stop()


def get_json(url: str) -> object:
    """GET a loopback URL and decode its JSON."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def get_text(url: str) -> str:
    """GET a loopback URL and return its text."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return response.read().decode()


def check_statuses(double: ConsulDouble) -> dict[str, dict]:
    """Return every service check of the double by service ID."""
    checks = get_json(f"{double.url}/v1/health/state/any")
    return {c["ServiceID"]: c for c in checks if c["ServiceID"]}


def all_passing(double: ConsulDouble, fleet: DemoFleet) -> bool:
    """Tell whether every instance of the fleet is registered with a passing check."""
    checks = check_statuses(double)
    return all(checks.get(i.instance_id, {}).get("Status") == "passing" for i in fleet.instances)


@pytest.fixture
def healthy_fleet(demo_fleet, fleet_consul) -> Iterator[DemoFleet]:
    """The fleet with every check passing; faults a test leaves behind are healed after it."""
    wait_for(lambda: all_passing(fleet_consul, demo_fleet), "every instance passing", 60)
    yield demo_fleet
    for instance in demo_fleet.instances:
        demo_fleet.heal(instance.instance_id)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Add up the samples named `name` in Prometheus text whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
