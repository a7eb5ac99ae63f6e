"""The prometheus_factory fixture runs a real Prometheus scraping real targets."""

from prometheus_client import Gauge

from tests.fixtures.processes import free_port, wait_for


def test_prometheus_scrapes_a_prometheus_client_target(prometheus_factory, scrape_target_factory):
    target = scrape_target_factory()
    Gauge("quarterdeck_smoke_value", "Set by the smoke test.", registry=target.registry).set(42)
    prometheus = prometheus_factory({"smoke": [target.address]})

    scraped = prometheus.wait_for_target("smoke")

    assert scraped["scrapeUrl"] == f"http://{target.address}/metrics"
    samples = wait_for(
        lambda: prometheus.query('quarterdeck_smoke_value{job="smoke"}'), "smoke sample stored"
    )
    assert samples[0]["metric"]["instance"] == target.address
    assert samples[0]["value"][1] == "42"


def test_prometheus_reports_an_unreachable_target_down(prometheus_factory):
    prometheus = prometheus_factory({"gone": [f"127.0.0.1:{free_port()}"]})

    target = prometheus.wait_for_target("gone", health="down")

    assert "connection refused" in target["lastError"]
