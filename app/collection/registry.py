"""Build the configured collectors; every source kind is registered here, explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.config import Config, PrometheusConfig
from collectors.alertmanager import AlertmanagerCollector
from collectors.base import Collector
from collectors.haproxy import HAProxyCollector
from collectors.nginx import NginxCollector
from collectors.prometheus import PrometheusCollector
from collectors.redis_idem import RedisIdemCollector
from collectors.static import StaticCollector, StaticService


@dataclass(frozen=True)
class ConfiguredSource:
    """A source named in the configuration, and its collector if this version has one."""

    name: str
    kind: str
    collector: Collector | None
    # How old the last success may get before the data counts as stale.
    stale_after_s: float


def configured_sources(config: Config, clock: Callable[[], datetime]) -> list[ConfiguredSource]:
    """List every source in the config, in a stable order."""
    interval = config.collect.interval_s
    polled_stale = max(3 * interval, 30)
    sources: list[ConfiguredSource] = []
    if config.consul is not None:
        sources.append(_consul_source(config, clock))
    if config.static_services:
        static = StaticCollector(
            [StaticService(s.name, s.instances, s.tags) for s in config.static_services],
            clock=clock,
        )
        sources.append(ConfiguredSource("static", "static", static, polled_stale))
    # Their collectors come with their own issues; until then they are listed as disabled.
    if config.prometheus is not None:
        prometheus = PrometheusCollector.from_config(config.prometheus, clock=clock)
        sources.append(ConfiguredSource("prometheus", "prometheus", prometheus, polled_stale))
    if config.alertmanager is not None:
        label = (config.prometheus or PrometheusConfig()).alert_service_label
        alertmanager = AlertmanagerCollector.from_config(config.alertmanager, label, clock=clock)
        sources.append(ConfiguredSource("alertmanager", "alertmanager", alertmanager, polled_stale))
    if config.redis is not None:
        redis_idem = RedisIdemCollector.from_config(config.redis, clock=clock)
        sources.append(ConfiguredSource("redis", "redis", redis_idem, polled_stale))
    for haproxy in config.haproxy:
        collector = HAProxyCollector.from_config(haproxy, clock=clock)
        sources.append(ConfiguredSource(haproxy.name, "haproxy", collector, polled_stale))
    for nginx in config.nginx:
        collector = NginxCollector.from_config(nginx, clock=clock)
        sources.append(ConfiguredSource(nginx.name, "nginx", collector, polled_stale))
    return sources


def _consul_source(config: Config, clock: Callable[[], datetime]) -> ConfiguredSource:
    try:
        from collectors.consul import ConsulCollector
    except ImportError:  # the Consul collector is not part of this build yet
        return ConfiguredSource("consul", "consul", None, 60.0)
    collector = ConsulCollector.from_config(config.consul, clock=clock)
    return ConfiguredSource("consul", "consul", collector, collector.stale_after_s)
