"""The demo's incident script opens with a slow dependency and an error path, for the traces."""

from __future__ import annotations

from demo.consul import ConsulDouble
from demo.fleet.supervisor import DemoFleet
from demo.weather import DemoWeather
from tests.fixtures.processes import wait_for


def test_the_first_incidents_are_a_sometimes_slow_inventory_then_failing_payments(tmp_path):
    # Planned, never started: the incidents are fault files the instances would read.
    fleet = DemoFleet(tmp_path, "http://127.0.0.1:1", tools=())
    with ConsulDouble() as double:
        weather = DemoWeather(fleet, double, seed=3, pace_s=0.05).start()
        try:
            wait_for(lambda: len(weather.history) >= 3, "three incidents", 10)
            faults = {
                name: (fleet.faults_dir / name).read_text().split()
                for name in ("inventory-1", "payments-1")
                if (fleet.faults_dir / name).exists()
            }
        finally:
            weather.stop()
    assert weather.history[:2] == [("inventory-1", "spikes"), ("payments-1", "errors")]
    # Each was a real fault file (unless it had already healed when we looked).
    assert faults.get("inventory-1", ["spikes"]) == ["spikes"]
    assert faults.get("payments-1", ["errors"]) == ["errors"]
    # Stopping the weather heals what it broke.
    assert not (fleet.faults_dir / "inventory-1").exists()


def test_without_those_kinds_the_script_opens_at_random(tmp_path):
    fleet = DemoFleet(tmp_path, "http://127.0.0.1:1", tools=())
    with ConsulDouble() as double:
        weather = DemoWeather(fleet, double, seed=3, pace_s=0.05, incidents=("slow",)).start()
        try:
            wait_for(lambda: weather.history, "an incident", 10)
        finally:
            weather.stop()
    assert all(kind == "slow" for _, kind in weather.history)
