"""The demo's scripted night: its scenes in order on the fleet's fault files and Consul, then
the weather; the bad canary holds until it is rolled back; the storm's retries."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from demo.consul import ConsulDouble
from demo.fleet.supervisor import DemoFleet
from demo.night import (
    BAD_CANARY_VERSION,
    CANARY_INSTANCE,
    STORM_MISMATCH_EVERY,
    IncidentNight,
    bad_canary_record,
    retry_storm,
)
from tests.fixtures.processes import wait_for

RELEASES_KEY = "quarterdeck/releases/orders"


def faults(fleet) -> dict[str, list[str]]:
    return {p.name: p.read_text().split() for p in fleet.faults_dir.iterdir() if p.is_file()}


def test_the_night_plays_its_scenes_in_order_then_hands_over_to_the_weather(tmp_path):
    # Planned, never started: the scenes are fault files, a redeploy and a releases key.
    fleet = DemoFleet(tmp_path, "http://127.0.0.1:1", tools=())
    fleet.faults_dir.mkdir(parents=True, exist_ok=True)
    weather_started = threading.Event()
    with ConsulDouble() as double:
        night = IncidentNight(fleet, double, pace=0.01, then=weather_started.set).start()
        try:
            wait_for(lambda: ("bad-canary", "start") in night.history, "the bad canary", 10)
            seen = faults(fleet)
            record = json.loads(double.kv_get(RELEASES_KEY))
            assert weather_started.wait(5)
            holding = set(night.holding)
        finally:
            night.stop()
    started = [scene for scene, what in night.history if what == "start"]
    # Without Redis here, there are no keyed orders to storm: the scene is skipped, not faked.
    assert started == ["slow-dependency", "failing-instance", "bad-canary"]
    assert seen["orders-2"] == ["errors"]
    assert seen.get("inventory-1", ["spikes"]) == ["spikes"]
    assert seen.get("payments-1", ["unhealthy", "errors"]) == ["unhealthy", "errors"]
    assert fleet.instance(CANARY_INSTANCE).version == BAD_CANARY_VERSION
    assert (record["active"], record["previous"]) == (BAD_CANARY_VERSION, "2.4.1")
    assert record["history"][-1]["version"] == BAD_CANARY_VERSION
    # The weather leaves the broken canary to the night (and to whoever rolls it back).
    assert CANARY_INSTANCE in holding
    # Stopping heals everything the night broke.
    assert faults(fleet) == {}


def test_the_bad_canary_heals_once_the_release_is_rolled_back(tmp_path):
    fleet = DemoFleet(tmp_path, "http://127.0.0.1:1", tools=())
    fleet.faults_dir.mkdir(parents=True, exist_ok=True)
    with ConsulDouble() as double:
        night = IncidentNight(fleet, double, pace=0.01).start()
        try:
            wait_for(lambda: ("bad-canary", "start") in night.history, "the bad canary", 10)
            assert (fleet.faults_dir / CANARY_INSTANCE).exists()
            rolled_back = json.loads(double.kv_get(RELEASES_KEY))
            rolled_back["active"], rolled_back["previous"] = "2.4.1", BAD_CANARY_VERSION
            double.kv_put(RELEASES_KEY, json.dumps(rolled_back))
            wait_for(lambda: ("bad-canary", "end") in night.history, "the canary healed", 10)
            assert not (fleet.faults_dir / CANARY_INSTANCE).exists()
            assert CANARY_INSTANCE not in night.holding
        finally:
            night.stop()


class Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.headers["Idempotency-Key"], body))
        self.send_response(409)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def orders_site():
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_storm_retries_the_same_few_keys_and_now_and_then_changes_the_payload(orders_site):
    import random

    stop = threading.Event()
    thread = threading.Thread(
        target=retry_storm, args=([orders_site], stop, random.Random(7), 0.01), daemon=True
    )
    thread.start()
    try:
        wait_for(lambda: len(Recorder.seen) >= 3 * 2 * STORM_MISMATCH_EVERY, "retries", 10)
    finally:
        stop.set()
        thread.join(5)
    keys = {key for key, _ in Recorder.seen}
    assert len(keys) == 3
    for key in keys:
        bodies = [json.dumps(body, sort_keys=True) for k, body in Recorder.seen if k == key]
        # Mostly the same order again (a retry), sometimes another one under the same key.
        assert len(set(bodies)) >= 2
        assert bodies.count(bodies[0]) > len(bodies) // 2


def test_the_bad_canary_record_names_the_candidate_active_and_the_stable_version_previous():
    from datetime import UTC, datetime

    record = json.loads(bad_canary_record(datetime(2026, 12, 3, 4, 0, tzinfo=UTC)))
    assert (record["active"], record["previous"]) == (BAD_CANARY_VERSION, "2.4.1")
    assert record["history"][-1] == {
        "version": BAD_CANARY_VERSION, "at": "2026-12-03T04:00:00Z", "by": "deploy-bot",
    }  # fmt: skip
    # The versions before it are dated back from the same moment, not fixed dates.
    assert record["history"][-2]["at"] == "2026-12-01T04:00:00Z"
