"""RED per service from what a real Prometheus scraped, in the same few queries for any fleet."""

from __future__ import annotations

import pytest

from app.config import PrometheusConfig
from app.models import utcnow
from collectors.base import SourceUnavailable
from collectors.metrics import PushGaugeUpdate, RedUpdate, TargetsUpdate
from collectors.prometheus import PrometheusCollector, PrometheusReader, only_label_value
from tests.fixtures.processes import free_port, wait_for

WINDOW = "10s"


def collector_for(url: str, **keys) -> PrometheusCollector:
    return PrometheusCollector.from_config(
        PrometheusConfig(url=url, window=WINDOW, **keys), clock=utcnow
    )


def red_of(records) -> dict:
    [red] = [r for r in records if isinstance(r, RedUpdate)]
    return {s.service: s for s in red.services}


def test_rate_errors_and_latency_come_from_the_samples_prometheus_scraped(
    prometheus_factory, fleet_metrics
):
    fleet_metrics.serve("orders", per_tick=2, errors_in_ten=1)  # 40 rps, 10 % answered 500
    fleet_metrics.serve("payments", per_tick=1)  # 20 rps, no errors
    fleet_metrics.push.labels("push", "push-1").set(120)
    fleet_metrics.push.labels("push", "push-2").set(80)
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    collector = collector_for(prometheus.url)

    def steady():
        red = red_of(collector.collect())
        orders = red.get("orders")
        if orders and orders.rate_rps and 30 < orders.rate_rps < 50 and "payments" in red:
            return red
        return None

    red = wait_for(steady, "a full window of steady traffic", timeout=60)

    orders, payments = red["orders"], red["payments"]
    assert 0.05 < orders.error_ratio < 0.15
    assert payments.error_ratio == 0.0  # traffic without errors is 0, not "no figure"
    assert 14 < payments.rate_rps < 26
    assert 10 <= orders.p50_ms <= 25  # the 20 ms requests' bucket
    assert 250 <= orders.p95_ms <= 500  # the slow failures' bucket
    assert payments.p95_ms <= 25
    records = collector.collect()
    [push] = [r for r in records if isinstance(r, PushGaugeUpdate)]
    # The application's own `instance` label, which Prometheus keeps as exported_instance.
    assert [(v.service, v.instance, v.connections) for v in push.instances] == [
        ("push", "push-1", 120.0),
        ("push", "push-2", 80.0),
    ]
    [targets] = [r for r in records if isinstance(r, TargetsUpdate)]
    assert [(t.job, t.instance, t.health) for t in targets.targets] == [
        ("fleet", fleet_metrics.target.address, "up")
    ]
    assert targets.targets[0].last_scrape_at is not None


def test_a_pass_costs_the_same_requests_for_two_services_and_for_sixty_two(
    prometheus_factory, fleet_metrics, recording_proxy_factory
):
    fleet_metrics.serve("orders", per_tick=1)
    fleet_metrics.serve("payments", per_tick=1)
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    proxy = recording_proxy_factory(prometheus.url)
    collector = collector_for(proxy.url)
    wait_for(lambda: len(red_of(collector.collect())) == 2, "two services", timeout=60)
    proxy.reset()
    collector.collect()
    few = dict(proxy.requests)

    for n in range(60):
        fleet_metrics.serve(f"svc-{n:02d}", per_tick=1)
    wait_for(lambda: len(red_of(collector.collect())) == 62, "62 services", timeout=60)
    proxy.reset()
    collector.collect()

    assert dict(proxy.requests) == few
    assert few == {"/api/v1/query": 5, "/api/v1/targets": 1, "/api/v1/alerts": 1}


def test_a_promql_error_is_a_source_error_with_prometheus_reason(prometheus_factory):
    prometheus = prometheus_factory({})
    collector = collector_for(prometheus.url, rate_query="sum by ({label}) (rate(x[{window}])")

    with pytest.raises(SourceUnavailable) as raised:
        collector.collect()

    assert "rate_rps" in raised.value.reason and "bad_data" in raised.value.reason


def test_a_malformed_answer_is_a_source_error_naming_what_was_wrong(static_site_factory):
    site = static_site_factory(
        {
            "api/v1/query": '{"status": "success", "data": {"resultType": "vector", '
            '"result": [{"metric": {"service": "orders"}, "value": "oops"}]}}'
        }
    )
    collector = collector_for(site.url.rstrip("/"))

    with pytest.raises(SourceUnavailable) as raised:
        collector.collect()

    assert raised.value.reason.startswith("Prometheus answered rate_rps malformed")


def test_an_unreachable_prometheus_is_a_source_error_not_zero_figures():
    collector = collector_for(f"http://127.0.0.1:{free_port()}")

    with pytest.raises(SourceUnavailable) as raised:
        collector.collect()

    assert raised.value.reason.startswith("cannot reach Prometheus at http://127.0.0.1:")


def test_a_chart_reads_one_service_from_prometheus_with_its_name_escaped(
    prometheus_factory, fleet_metrics
):
    awkward = 'or"ders$1\\'
    fleet_metrics.serve(awkward, per_tick=1)
    fleet_metrics.serve("payments", per_tick=1)
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    reader = PrometheusReader(prometheus.url, timeout_s=3)
    query = only_label_value(
        f"sum by (service) (rate(http_server_request_duration_seconds_count[{WINDOW}]))",
        "service",
        awkward,
    )

    def series():
        now = utcnow()
        found = reader.range(query, now.replace(microsecond=0), now, "1s")
        return found if found and any(v for _, v in found[0].points) else None

    found = wait_for(series, "the service's series", timeout=60)

    assert [s.labels for s in found] == [{"service": awkward}]
