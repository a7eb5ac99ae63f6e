"""[prometheus] and [alertmanager]: checked at load, named in errors, registered as collectors."""

from __future__ import annotations

import pytest

from app.collection.registry import configured_sources
from app.config import ConfigError, load_config, parse_config
from app.models import utcnow
from collectors.alertmanager import AlertmanagerCollector
from collectors.base import SourceUnavailable
from collectors.prometheus import PrometheusCollector
from tests.fixtures.processes import free_port


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"preset": "micrometer"}, "[prometheus] preset = 'micrometer' must be one of"),
        ({"window": "five minutes"}, "[prometheus] window = 'five minutes' is not a PromQL"),
        ({"service_label": "service-name"}, "[prometheus] service_label = 'service-name' is not"),
        ({"push_gauge": "push connections"}, "[prometheus] push_gauge = 'push connections'"),
        ({"rate_query": "sum(rate(x[{window}]))"}, "[prometheus] rate_query must aggregate by"),
        ({"latency_query": "sum by ({label}) (x)"}, "latency_query must use {quantile}"),
        ({"timeout_s": 0}, "[prometheus] timeout_s must be at least 1"),
        ({"url": "ftp://prometheus"}, "[prometheus] url = 'ftp://prometheus' must start with"),
    ],
)
def test_a_bad_prometheus_key_is_refused_naming_it(section, message):
    with pytest.raises(ConfigError) as raised:
        parse_config({"prometheus": section}, "quarterdeck.toml")

    assert message in str(raised.value) and str(raised.value).startswith("quarterdeck.toml: ")


def test_alertmanager_is_a_section_of_its_own_settable_from_the_environment(tmp_path):
    path = tmp_path / "quarterdeck.toml"
    path.write_text('[prometheus]\nurl = "http://10.0.0.9:9090"\nalert_service_label = "app"\n')

    config = load_config(path, environ={"QUARTERDECK_ALERTMANAGER_URL": "http://10.0.0.9:9093"})

    assert config.alertmanager.url == "http://10.0.0.9:9093"
    sources = {s.name: s for s in configured_sources(config, utcnow)}
    assert isinstance(sources["prometheus"].collector, PrometheusCollector)
    assert isinstance(sources["alertmanager"].collector, AlertmanagerCollector)
    assert sources["alertmanager"].collector.alert_service_label == "app"
    with pytest.raises(ConfigError, match=r"unknown key 'adress' in \[alertmanager\]"):
        parse_config({"alertmanager": {"adress": "x"}})


def test_an_unreachable_alertmanager_is_a_source_error():
    collector = AlertmanagerCollector(f"http://127.0.0.1:{free_port()}", clock=utcnow)

    with pytest.raises(SourceUnavailable) as raised:
        collector.collect()

    assert raised.value.reason.startswith("cannot reach Alertmanager at http://127.0.0.1:")


def test_a_malformed_alertmanager_answer_is_a_source_error_naming_the_endpoint(
    static_site_factory,
):
    site = static_site_factory(
        {"api/v2/silences": "[]", "api/v2/alerts": '{"alerts": "not a list of alerts"}'}
    )
    collector = AlertmanagerCollector(site.url, clock=utcnow)

    with pytest.raises(SourceUnavailable) as raised:
        collector.collect()

    assert raised.value.reason == "Alertmanager answered /api/v2/alerts malformed: not a list"
