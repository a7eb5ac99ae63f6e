"""The classic preset, NaN answers, and the on-demand charts, against a real Prometheus."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import Counter, Histogram

from app.config import PrometheusConfig
from app.models import utcnow
from collectors.metrics import RedUpdate
from collectors.prometheus import (
    PrometheusCollector,
    PrometheusReader,
    push_connections_by_service,
    service_red_sparkline,
)
from tests.fixtures.processes import wait_for


def red_of(collector) -> dict:
    [red] = [r for r in collector.collect() if isinstance(r, RedUpdate)]
    return {s.service: s for s in red.services}


def test_the_classic_preset_reads_http_requests_total_and_its_duration_histogram(
    prometheus_factory, scrape_target_factory
):
    target = scrape_target_factory()
    requests_total = Counter(
        "http_requests", "Requests.", ["service", "status"], registry=target.registry
    )
    duration = Histogram(
        "http_request_duration_seconds", "Duration.", ["service"], registry=target.registry
    )
    prometheus = prometheus_factory({"legacy": [target.address]})
    config = PrometheusConfig(url=prometheus.url, preset="classic", window="10s")
    collector = PrometheusCollector.from_config(config, clock=utcnow)

    def answered():
        for _ in range(8):
            requests_total.labels("billing", "200").inc(3)
            requests_total.labels("billing", "503").inc(1)
            duration.labels("billing").observe(0.07)
        red = red_of(collector).get("billing")
        return red if red and red.rate_rps and red.error_ratio else None

    billing = wait_for(answered, "the classic metrics to be scraped twice", timeout=60)

    assert 0.15 < billing.error_ratio < 0.35  # one in four
    assert 50 <= billing.p50_ms <= 100  # the 0.07 s requests' bucket (0.05, 0.075]


def test_a_nan_answer_is_no_figure_rather_than_zero(prometheus_factory, fleet_metrics):
    fleet_metrics.serve("orders", per_tick=1)
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    config = PrometheusConfig(
        url=prometheus.url,
        window="10s",
        # 0/0 per service: Prometheus answers "NaN" for each.
        rate_query="sum by ({label}) (http_server_request_duration_seconds_count) * 0 / 0",
    )
    collector = PrometheusCollector.from_config(config, clock=utcnow)

    orders = wait_for(lambda: red_of(collector).get("orders"), "orders in the answer", 60)

    assert orders.rate_rps is None


def test_push_connections_per_service_and_a_services_sparkline_come_from_range_queries(
    prometheus_factory, fleet_metrics
):
    fleet_metrics.serve("orders", per_tick=1, errors_in_ten=2)
    fleet_metrics.serve("payments", per_tick=1)
    fleet_metrics.push.labels("push", "push-1").set(30)
    fleet_metrics.push.labels("push", "push-2").set(12)
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    config = PrometheusConfig(url=prometheus.url, window="10s")
    reader = PrometheusReader(config.url, config.range_timeout_s)
    span = timedelta(minutes=1)

    def push_history():
        lines = push_connections_by_service(reader, config, utcnow(), span)
        return lines if any(v for _, v in lines.get("push", [])) else None

    lines = wait_for(push_history, "the push gauge in a range query", timeout=60)
    assert set(lines) == {"push"}
    assert {v for _, v in lines["push"] if v is not None} == {42.0}

    def sparkline():
        found = service_red_sparkline(reader, config, "orders", utcnow(), span)
        ratios = found["error_ratio"]
        return found if ratios and ratios[-1][1] and found["rate_rps"] else None

    found = wait_for(sparkline, "orders' sparkline", timeout=60)
    assert set(found) == {"rate_rps", "error_ratio", "p95_ms"}
    last_time, last_ratio = found["error_ratio"][-1]
    assert 0.1 < last_ratio < 0.3
    assert found["rate_rps"][-1][1] > 0
    assert utcnow() - span <= last_time <= utcnow() + timedelta(seconds=1)  # whole seconds
