"""Without HAProxy, nginx or Prometheus the fleet is reached directly and says what is missing."""

from __future__ import annotations

import tomllib

from app.config import parse_config
from demo.fleet.supervisor import DemoFleet
from demo.run import banner
from tests.fixtures.processes import require_binary


def test_a_fleet_without_tools_is_reached_directly_and_configures_no_tool(tmp_path):
    fleet = DemoFleet(tmp_path, "http://127.0.0.1:1", tools=())
    assert fleet.missing == ["haproxy", "nginx", "prometheus", "redis-server"]
    # Only the business probe of the gateway's checkout, which needs no tool.
    config = parse_config(tomllib.loads(fleet.quarterdeck_config()))
    (probe,) = config.probes
    assert (probe.service, probe.url) == ("gateway", fleet.gateway_urls()[0] + "/api/checkout")
    assert config.prometheus is None and config.haproxy == () and config.nginx == ()
    gateways = [i for i in fleet.instances if i.service == "gateway"]
    assert fleet.gateway_urls() == [i.url for i in gateways]
    pushes = [i for i in fleet.instances if i.service == "push"]
    assert fleet.push_urls() == [f"ws://{i.address}/ws" for i in pushes]
    assert not (tmp_path / "haproxy.cfg").exists() and not fleet.nginx_prefix.exists()
    assert fleet.orders_urls() == []  # no Redis: no keyed order clients


def test_with_its_tools_the_fleet_configures_each_of_them_for_quarterdeck(tmp_path):
    for name, package in (
        ("haproxy", "haproxy"),
        ("nginx", "nginx-light"),
        ("prometheus", "prometheus"),
        ("redis-server", "redis-server"),
    ):
        require_binary(name, package)
    fleet = DemoFleet(tmp_path, "http://127.0.0.1:1")
    assert fleet.missing == []
    config = parse_config(tomllib.loads(fleet.quarterdeck_config()))
    assert config.prometheus.url == fleet.prometheus_url
    (edge,) = config.haproxy
    assert (edge.stats_url, edge.runtime) == (fleet.haproxy_stats_url, fleet.haproxy_runtime)
    (nginx,) = config.nginx
    assert nginx.status_url == fleet.nginx_status_url
    assert nginx.upstream_conf == str(fleet.nginx_upstream_conf)
    assert list(nginx.reload) == [*fleet.nginx_command(), "-s", "reload"]
    assert config.redis.url == fleet.redis_url
    assert fleet.orders_urls() == [i.url for i in fleet.instances if i.service == "orders"]


def test_the_banner_says_what_is_real_what_is_simulated_and_what_is_missing():
    text = banner(["haproxy"], ["nginx", "prometheus"])
    assert "real processes" in text and "behind and scraped by haproxy" in text
    assert "The Consul agent is simulated" in text
    assert "Not installed here: nginx, prometheus (see Sources)." in text
    assert "Not installed" not in banner(["haproxy", "nginx", "prometheus"], [])
