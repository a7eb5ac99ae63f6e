"""The demo's incidents really break instances of the fleet, and heal them again."""

from __future__ import annotations

import time

import pytest

from demo.weather import DemoWeather
from tests.demo.conftest import all_passing, check_statuses
from tests.fixtures.processes import wait_for


def test_weather_breaks_an_instance_through_its_real_check_then_heals_it(
    healthy_fleet, fleet_consul
):
    weather = DemoWeather(
        healthy_fleet, fleet_consul, seed=7, pace_s=0.3, incidents=("unhealthy", "maintenance")
    ).start()
    seen_bad: dict[str, str] = {}
    healed: set[str] = set()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not healed:
            checks = check_statuses(fleet_consul)
            for service_id, check in checks.items():
                if check["Status"] != "passing":
                    seen_bad.setdefault(service_id, check["Output"] or check["Notes"])
            healed |= {s for s in seen_bad if checks.get(s, {}).get("Status") == "passing"}
            time.sleep(0.1)
    finally:
        weather.stop()
    assert weather.history, "the weather never struck"
    assert seen_bad, "no instance ever failed"
    assert healed, "no failed instance recovered"
    # An unhealthy instance failed its real probe: the double saw its /health answer 503.
    unhealthy = {i for i, kind in weather.history if kind == "unhealthy"}
    outputs = [seen_bad[i] for i in unhealthy if i in seen_bad]
    assert any("503 Service Unavailable" in output for output in outputs), seen_bad
    # Stopping the weather heals whatever it left broken.
    wait_for(lambda: all_passing(fleet_consul, healthy_fleet), "every instance healed", 30)


def test_weather_refuses_an_incident_it_does_not_know(demo_fleet, fleet_consul):
    with pytest.raises(ValueError, match="unknown incident 'flood'"):
        DemoWeather(demo_fleet, fleet_consul, incidents=("flood",))
