"""The adapters of the configured sources, by the name their records carry."""

from __future__ import annotations

from app.actions.alertmanager import AlertmanagerAdapter
from app.actions.consul import ConsulAdapter
from app.actions.haproxy import HAProxyAdapter
from app.actions.nginx import NginxAdapter
from app.actions.steps import Adapter
from app.config import Config

CONSUL_SOURCE = "consul"
ALERTMANAGER_SOURCE = "alertmanager"


def configured_adapters(config: Config) -> dict[str, Adapter]:
    """Return an adapter per changeable source: balancers by name, consul, alertmanager.

    A HAProxy without `runtime` or an nginx without `upstream_conf` can only be read: it has
    no adapter, and an action that needs it is refused before it starts.
    """
    adapters: dict[str, Adapter] = {}
    for haproxy in config.haproxy:
        if haproxy.runtime:
            adapters[haproxy.name] = HAProxyAdapter(haproxy.name, haproxy.runtime)
    for nginx in config.nginx:
        if nginx.upstream_conf:
            adapters[nginx.name] = NginxAdapter(
                nginx.name, nginx.upstream_conf, nginx.test, nginx.reload
            )
    if config.consul is not None:
        adapters[CONSUL_SOURCE] = ConsulAdapter.from_config(config.consul)
    if config.alertmanager is not None:
        adapters[ALERTMANAGER_SOURCE] = AlertmanagerAdapter(
            config.alertmanager.url, config.alertmanager.timeout_s
        )
    return adapters


def close_adapters(adapters: dict[str, Adapter]) -> None:
    """Close what the adapters hold open."""
    for adapter in adapters.values():
        close = getattr(adapter, "close", None)
        if close is not None:
            close()
