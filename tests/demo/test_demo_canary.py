"""In the demo, a canary abort and a rollback of orders move real requests (through HAProxy)."""

from __future__ import annotations

import json

import pytest

from app.actions.running import parse_action_request, submit_action
from app.actions.sources import close_adapters, configured_adapters
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import ConsulConfig, HAProxyConfig
from collectors.haproxy import runtime_command
from demo.consul import ConsulDouble
from demo.fleet.configs import HAProxyPorts, haproxy_config
from demo.fleet.supervisor import DemoFleet
from demo.fleet.tools import find_tool
from demo.fleet.topology import FLEET, plan_instances, release_record
from tests.fixtures.processes import wait_for

ORDERS = next(s for s in FLEET if s.name == "orders")


def test_the_demo_haproxy_fronts_both_orders_versions():
    instances = plan_instances(list(range(30000, 30100)))
    config = haproxy_config(HAProxyPorts(1, 2, 3, 4, 5), instances)

    assert "backend orders\n" in config
    assert "server orders-1 " in config and "server orders-2 " in config


def test_the_releases_key_of_a_service_mid_canary_names_the_canary_active():
    record = json.loads(release_record(ORDERS))

    assert record["active"] == ORDERS.canary_version
    assert record["previous"] == ORDERS.version


def orders_sessions(runtime: str) -> dict[str, int]:
    """Total sessions (`stot`) of each orders server, from `show stat`."""
    lines = runtime_command(runtime, "show stat").splitlines()
    header = lines[0][2:].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: int(r["stot"]) for r in rows if r.get("pxname") == "orders"
            and r["svname"] not in ("FRONTEND", "BACKEND")}  # fmt: skip


@pytest.mark.skipif(find_tool("haproxy") is None, reason="needs haproxy")
def test_a_canary_abort_then_a_rollback_take_demo_orders_off_the_canary(tmp_path, make_qd):
    with ConsulDouble() as double:
        fleet = DemoFleet(tmp_path, double.url, check_interval="1s", clients=2, rps=8)
        fleet.start()
        try:
            assert fleet.wait_ready(90)
            runtime = fleet.haproxy_runtime
            double.kv_put("quarterdeck/releases/orders", release_record(ORDERS))
            wait_for(lambda: min(orders_sessions(runtime).values()) > 0, "orders traffic", 60)
            qd = make_qd(
                consul=ConsulConfig(url=double.url, wait_s=1, token_env=""),
                haproxy=(HAProxyConfig("edge", fleet.haproxy_stats_url, runtime=runtime),),
            )
            for source in configured_sources(qd.config, qd.clock):
                assert run_pass(qd, source.collector).ok
            adapters = configured_adapters(qd.config)
            try:
                body = {"action": "canary", "target": {"service": "orders"},
                        "params": {"from": ORDERS.version, "to": ORDERS.canary_version,
                                   "abort": True}}  # fmt: skip
                aborted = submit_action(qd, adapters, "alice", parse_action_request(body))
                assert aborted["status"] == "done", aborted["steps"]
                settled = orders_sessions(runtime)
                wait_for(
                    lambda: orders_sessions(runtime)["orders-1"] > settled["orders-1"] + 5,
                    "more orders requests",
                    60,
                )
                # Weight 0: the canary takes no new request (one already queued may land).
                assert orders_sessions(runtime)["orders-2"] <= settled["orders-2"] + 1
                body = {"action": "rollback", "target": {"service": "orders"}}
                rolled = submit_action(qd, adapters, "alice", parse_action_request(body))
                assert rolled["status"] == "done", rolled["steps"]
                canary = adapters["edge"].read({"backend": "orders", "server": "orders-2"})
                stable = adapters["edge"].read({"backend": "orders", "server": "orders-1"})
                assert (canary["state"], stable) == ("drain", {"state": "ready", "weight": 1})
            finally:
                close_adapters(adapters)
            releases = json.loads(double.kv_get("quarterdeck/releases/orders"))
            assert releases["active"] == ORDERS.version
            assert releases["previous"] == ORDERS.canary_version
        finally:
            fleet.stop()
