"""HAProxy, nginx and Prometheus run from the demo's generated configs, in front of the fleet."""

from __future__ import annotations

import csv
import io
import subprocess
import urllib.parse

from tests.demo.conftest import check_statuses, get_json, get_text
from tests.fixtures.processes import require_binary, wait_for


def test_the_generated_configs_are_accepted_by_the_real_binaries(demo_fleet):
    haproxy = require_binary("haproxy", "haproxy")
    checked = subprocess.run(
        [haproxy, "-c", "-f", demo_fleet.folder / "haproxy.cfg"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    require_binary("nginx", "nginx-light")
    tested = subprocess.run([*demo_fleet.nginx_command(), "-t"], capture_output=True, text=True)
    assert tested.returncode == 0 and "test is successful" in tested.stderr, tested.stderr
    promtool = require_binary("promtool", "prometheus")
    config = demo_fleet.prometheus_dir / "prometheus.yml"
    promtool_run = subprocess.run(
        [promtool, "check", "config", config], capture_output=True, text=True
    )
    output = promtool_run.stdout + promtool_run.stderr
    assert promtool_run.returncode == 0, output
    assert "SUCCESS: 2 rules found" in output


def test_the_nginx_upstream_file_uses_weights_backup_and_failure_limits(demo_fleet):
    push = [i for i in demo_fleet.instances if i.service == "push"]
    lines = demo_fleet.nginx_upstream_conf.read_text().splitlines()
    servers = [line.strip() for line in lines if line.strip().startswith("server ")]
    assert servers == [
        f"server {push[0].address} weight=3 max_fails=2 fail_timeout=10s max_conns=1000;",
        f"server {push[1].address} weight=1 max_fails=2 fail_timeout=10s;",
        f"server {push[2].address} backup max_fails=2 fail_timeout=10s;",
    ]


def test_prometheus_scrapes_every_instance_with_its_service_and_instance(demo_fleet):
    prometheus = demo_fleet.prometheus_url

    def targets_up() -> dict[str, dict]:
        active = get_json(f"{prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]
        up = {t["labels"]["instance"]: t for t in active if t["health"] == "up"}
        return up if len(up) == len(demo_fleet.instances) else {}

    up = wait_for(targets_up, "every fleet target up", 30)
    for instance in demo_fleet.instances:
        target = up[instance.instance_id]
        assert target["labels"]["service"] == instance.service
        assert target["scrapeUrl"] == f"{instance.url}/metrics"
    query = urllib.parse.quote("push_connections_active")
    series = get_json(f"{prometheus}/api/v1/query?query={query}")["data"]["result"]
    assert {(s["metric"]["service"], s["metric"]["instance"]) for s in series} == {
        ("push", i.instance_id) for i in demo_fleet.instances if i.service == "push"
    }


def haproxy_rows(fleet) -> dict[tuple[str, str], dict]:
    """Return HAProxy's stats CSV rows by (proxy, server)."""
    text = get_text(fleet.haproxy_stats_url).removeprefix("# ")
    return {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(text))}


def served_by(url: str) -> str:
    """Return the instance that answered a GET, whatever its status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.headers["X-Served-By"]
    except urllib.error.HTTPError as error:
        return error.headers["X-Served-By"]


def test_haproxy_takes_a_failing_gateway_out_and_sends_users_to_the_other(healthy_fleet):
    wait_for(
        lambda: haproxy_rows(healthy_fleet)[("gateway", "gateway-1")]["status"] == "UP",
        "gateway-1 UP in HAProxy",
        20,
    )
    healthy_fleet.fault("gateway-1", "unhealthy")
    row = wait_for(
        lambda: (
            (r := haproxy_rows(healthy_fleet)[("gateway", "gateway-1")])["status"] == "DOWN" and r
        ),
        "gateway-1 DOWN in HAProxy",
        20,
    )
    assert row["check_status"] == "L7STS" and row["check_code"] == "503"
    (frontend,) = healthy_fleet.gateway_urls()
    # The fleet fails a request now and then by design: who answered is in X-Served-By.
    answers = [served_by(f"{frontend}/api/stock") for _ in range(4)]
    assert answers == ["gateway-2"] * 4
    healthy_fleet.heal("gateway-1")
    wait_for(
        lambda: haproxy_rows(healthy_fleet)[("gateway", "gateway-1")]["status"] == "UP",
        "gateway-1 UP again",
        20,
    )


def test_the_instance_down_rule_fires_for_a_killed_instance(healthy_fleet, fleet_consul):
    prometheus = healthy_fleet.prometheus_url
    healthy_fleet.restart_after_s = 15.0
    try:
        healthy_fleet.crash("payments-1")

        def instance_down() -> dict | None:
            alerts = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
            return next(
                (
                    a
                    for a in alerts
                    if a["labels"]["alertname"] == "InstanceDown"
                    and a["labels"]["instance"] == "payments-1"
                ),
                None,
            )

        alert = wait_for(instance_down, "InstanceDown for payments-1", 30)
        assert alert["state"] in ("pending", "firing")
        assert alert["labels"]["service"] == "payments"
        assert alert["labels"]["severity"] == "critical"
    finally:
        healthy_fleet.restart_after_s = 1.0
    wait_for(
        lambda: check_statuses(fleet_consul)["payments-1"]["Status"] == "passing",
        "payments-1 back",
        40,
    )


def test_a_push_server_marked_down_in_nginx_gets_no_new_connections(healthy_fleet):
    from tests.demo.test_fleet_push import push_gauges
    from tests.fixtures.websocket import open_websockets

    nginx_url = healthy_fleet.push_urls()[0]
    push_1 = healthy_fleet.instance("push-1")
    assert healthy_fleet.set_nginx_down("push-1", True)
    try:
        line = next(
            line
            for line in healthy_fleet.nginx_upstream_conf.read_text().splitlines()
            if push_1.address in line
        )
        assert line.strip().endswith(" down;")
        before = push_gauges(healthy_fleet)
        with open_websockets(nginx_url, 6):
            wait_for(
                lambda: sum(push_gauges(healthy_fleet).values()) == sum(before.values()) + 6,
                "6 more connections",
                10,
            )
            assert push_gauges(healthy_fleet)["push-1"] == before["push-1"]
    finally:
        assert healthy_fleet.set_nginx_down("push-1", False)
    assert " down" not in healthy_fleet.nginx_upstream_conf.read_text()
