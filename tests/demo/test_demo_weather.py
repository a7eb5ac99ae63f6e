"""The demo's simulated incidents break instances and heal them again."""

from __future__ import annotations

import time

import consul

from demo.consul import ConsulDouble
from demo.fleet_seed import seed_demo_fleet
from demo.weather import DemoWeather


def statuses(client: consul.Consul) -> dict[str, str]:
    _, checks = client.health.state("any")
    return {c["CheckID"] + "@" + c["Node"]: c["Status"] for c in checks}


def test_weather_breaks_an_instance_then_heals_it():
    double = ConsulDouble()
    instances = seed_demo_fleet(double)
    double.start()
    weather = DemoWeather(double, instances, seed=7, pace_s=0.05).start()
    client = consul.Consul(host=double.host, port=double.port)
    try:
        seen_bad: set[str] = set()
        healed: set[str] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not healed:
            now = statuses(client)
            bad = {k for k, v in now.items() if v != "passing"}
            healed |= {k for k in seen_bad if now.get(k) == "passing"}
            seen_bad |= bad
            time.sleep(0.02)
        assert seen_bad, "no instance ever failed"
        assert healed, "no failed instance recovered"
    finally:
        weather.stop()
        client.http.session.close()
        double.stop()
