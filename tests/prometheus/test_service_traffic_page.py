"""A service's traffic as its page and API show it: RED from a real Prometheus, the verdict's
disagreement when errors rise while nothing fails a check, and the last hour as sparklines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import PrometheusConfig, StaticServiceConfig
from app.factory import create_app
from app.views.services import SPARK_H, SPARK_W, sparkline_points
from tests.conftest import sign_in
from tests.fixtures.processes import wait_for


def test_errors_above_the_threshold_show_on_the_page_the_verdict_and_the_sparklines(
    make_qd, make_user, prometheus_factory, fleet_metrics
):
    fleet_metrics.serve("orders", per_tick=2, errors_in_ten=3)
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    qd = make_qd(
        prometheus=PrometheusConfig(url=prometheus.url, window="10s"),
        static_services=(StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),),
    )
    sources = {s.name: s for s in configured_sources(qd.config, qd.clock)}
    assert run_pass(qd, sources["static"].collector).ok
    client = create_app(qd=qd).test_client()
    make_user("vera", "viewer")
    assert sign_in(client, "vera").status_code == 302

    def measured():
        assert run_pass(qd, sources["prometheus"].collector).ok
        body = client.get("/api/v1/services/orders").json
        return body if (body["red"] or {}).get("error_ratio") else None

    body = wait_for(measured, "Prometheus to have scraped the errors twice", timeout=60)
    assert 0.2 < body["red"]["error_ratio"] < 0.4
    [said] = body["verdict"]["disagreements"]
    assert said["source"] == "prometheus" and "while nothing checks it" in said["says"]
    assert body["verdict"]["health"] == "warning"

    page = client.get("/services/orders").get_data(as_text=True)
    assert 'id="traffic"' in page and "data-red-errors" in page and 'id="disagreements"' in page
    assert 'hx-get="/charts/traffic/orders"' in page

    # The hour is read in 60 s steps: a line needs two of them, so a fresh Prometheus may
    # still say so (the range reads themselves are tested in test_templates_and_charts.py).
    chart = client.get("/charts/traffic/orders").get_data(as_text=True)
    assert chart.count("<figure") == 3 and "error ratio, last hour" in chart
    assert chart.count("<polyline") + chart.count("no samples in the last hour") == 3


def test_a_sparkline_scales_its_points_into_the_box_and_skips_the_gaps():
    start = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    points = [(start + timedelta(minutes=m), v) for m, v in ((0, 1.0), (1, None), (2, 3.0))]
    line = sparkline_points(points)
    assert line["points"] == f"0.0,{SPARK_H - 2:.1f} {SPARK_W:.1f},2.0"
    assert (line["low"], line["high"], line["last"]) == (1.0, 3.0, 3.0)
    assert sparkline_points(points[:2]) is None  # one known value draws no line


def test_the_traffic_chart_says_why_it_cannot_draw(make_qd, make_user):
    qd = make_qd()
    client = create_app(qd=qd).test_client()
    make_user("vera", "viewer")
    assert sign_in(client, "vera").status_code == 302
    chart = client.get("/charts/traffic/orders").get_data(as_text=True)
    assert "No [prometheus] source is configured" in chart
    anonymous = create_app(qd=qd).test_client()
    assert anonymous.get("/charts/traffic/orders").status_code in (302, 401)
