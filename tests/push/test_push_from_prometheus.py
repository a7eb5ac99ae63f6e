"""Push counts from the Prometheus gauge a real Prometheus scraped, and its chart of the hour."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client import Gauge

from app.auth.accounts import create_user
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import PrometheusConfig
from app.factory import create_app
from tests.conftest import PASSWORD, sign_in
from tests.fixtures.processes import wait_for
from tests.push.test_push_page import register

SPEC_RE = re.compile(r"<script type=\"application/json\" data-chart-spec>(.*?)</script>", re.S)


@pytest.fixture
def gauge_fleet(scrape_target_factory, prometheus_factory, make_qd):
    """A target exposing push_connections_active for two instances, scraped every second."""
    target = scrape_target_factory()
    gauge = Gauge("push_connections_active", "Open push connections.", ["service", "instance"],
                  registry=target.registry)  # fmt: skip
    gauge.labels("push", "push-1").set(7)
    gauge.labels("push", "push-2").set(3)
    prometheus = prometheus_factory({"push": [target.address]})
    wait_for(lambda: len(prometheus.query("push_connections_active")) == 2, "gauge scraped")
    qd = make_qd(prometheus=PrometheusConfig(url=prometheus.url))
    for number, instance in enumerate(("push-1", "push-2"), start=1):
        register(qd, "push", instance, "10.0.0.1", 9000 + number)
    with qd.store.session() as db:
        create_user(db, "viewer", "viewer", PASSWORD)
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "viewer").status_code == 302
    [source] = [s for s in configured_sources(qd.config, qd.clock) if s.name == "prometheus"]
    return prometheus, gauge, qd, client, source.collector


def test_the_gauge_counts_instances_no_balancer_counts(gauge_fleet):
    _prometheus, _gauge, qd, client, collector = gauge_fleet
    assert run_pass(qd, collector).ok

    body = client.get("/api/v1/push/connections").get_json()
    [push] = body["by_service"]
    counted = {i["instance"]: i for i in push["instances"]}
    assert {k: v["connections"] for k, v in counted.items()} == {"push-1": 7, "push-2": 3}
    assert all(i["source"] == "prometheus" for i in counted.values())
    assert body["total"] == 10 and push["total"] == 10
    assert body["stale"] is False


def test_the_page_charts_the_hour_from_prometheus(gauge_fleet):
    prometheus, _gauge, qd, client, collector = gauge_fleet
    assert run_pass(qd, collector).ok
    wait_for(lambda: prometheus.api("query_range", query="sum(push_connections_active)",
                                    start=str(int(qd.clock().timestamp()) - 60),
                                    end=str(int(qd.clock().timestamp())), step="1")["result"],
             "a range of the gauge")  # fmt: skip

    html = client.get("/push").get_data(as_text=True)
    spec = json.loads(SPEC_RE.search(html).group(1))
    assert spec["source"] == "prometheus"
    series = {s["key"]: s for s in spec["series"]}
    assert series["service:push"]["values"][-1] == 10
    assert series["total"]["values"][-1] == 10
    assert 'data-chart-source="prometheus"' in html


def test_a_stopped_prometheus_leaves_the_gauge_stale_and_the_chart_on_the_rollups(gauge_fleet):
    prometheus, _gauge, qd, client, collector = gauge_fleet
    assert run_pass(qd, collector).ok
    prometheus.stop()
    assert not run_pass(qd, collector).ok

    body = client.get("/api/v1/push/connections").get_json()
    [push] = body["by_service"]
    assert {i["instance"]: (i["connections"], i["stale"]) for i in push["instances"]} == {
        "push-1": (7, True),
        "push-2": (3, True),
    }
    assert body["total"] == 10 and body["stale"] is True
    html = client.get("/push").get_data(as_text=True)
    spec = json.loads(SPEC_RE.search(html).group(1))
    assert spec["source"] != "prometheus"
    assert "Prometheus could not draw the hour" in html
    # The stale numbers are not drawn at all (never as zeros), and the page says so.
    assert all(v != 0 for s in spec["series"] for v in s["values"])
    assert "No connection counts in the last hour" in html
