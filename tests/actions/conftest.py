"""A small fleet for actions: two web servers behind a real HAProxy and a real nginx, in Consul."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.actions.sources import close_adapters, configured_adapters
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import ConsulConfig, HAProxyConfig, NginxConfig
from app.context import Quarterdeck
from demo.consul import ConsulDouble
from tests.fixtures.haproxy import HAProxyServer, Member
from tests.fixtures.nginx import NginxServer
from tests.fixtures.processes import http_get, wait_for


@pytest.fixture(autouse=True)
def _no_consul_environment(monkeypatch) -> None:
    """py-consul lets CONSUL_HTTP_TOKEN override the token argument; keep it out."""
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Fleet:
    """web-1 and web-2 (each answers its own name) behind `edge` (HAProxy) and `push` (nginx)."""

    qd: Quarterdeck
    consul: ConsulDouble
    haproxy: HAProxyServer
    nginx: NginxServer
    addresses: dict[str, str]

    def adapters(self):
        """The adapters of this fleet's configuration."""
        return configured_adapters(self.qd.config)

    def collect(self) -> None:
        """One pass of every collector, so the store knows the instances and members."""
        for source in configured_sources(self.qd.config, self.qd.clock):
            result = run_pass(self.qd, source.collector)
            assert result.ok, (source.name, result.error)
            close = getattr(source.collector, "close", None)
            if close is not None:
                close()

    def haproxy_status(self, server: str) -> str:
        """The server's status column in `show stat` (UP, DRAIN, MAINT ...)."""
        return self.haproxy_stat(server)["status"]

    def haproxy_stat(self, server: str) -> dict[str, str]:
        """The server's row of `show stat`."""
        lines = self.haproxy.send_runtime("show stat").splitlines()
        header = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "web" and row.get("svname") == server:
                return row
        raise AssertionError(f"no server web/{server} in show stat")

    def nginx_line(self, instance: str) -> str:
        """The upstream file's server line of an instance."""
        address = self.addresses[instance]
        text = self.nginx.upstream_conf.read_text()
        return next(line.strip() for line in text.splitlines() if f"server {address}" in line)

    def maintenance(self, service_id: str) -> bool:
        """Whether Consul holds the instance's maintenance check."""
        _, body = _get_json(f"{self.consul.url}/v1/health/service/web")
        entry = next(e for e in body if e["Service"]["ID"] == service_id)
        return any(c["CheckID"] == f"_service_maintenance:{service_id}" for c in entry["Checks"])

    def kv(self, key: str):
        """A KV key's JSON value in the double, or None when absent."""
        raw = self.consul.kv_get(key)
        return None if raw is None else json.loads(raw)

    def answers_through_nginx(self, tries: int = 6) -> set[str]:
        """Which instances answer requests sent through nginx."""
        seen = set()
        for _ in range(tries):
            status, body = http_get(self.nginx.url)
            assert status == 200
            seen.add(body.strip())
        return seen


def _get_json(url: str):
    import requests

    response = requests.get(url, timeout=5)
    return response.status_code, response.json()


@pytest.fixture
def make_fleet(
    make_qd, static_site_factory, haproxy_factory, nginx_factory
) -> Iterator[Callable[..., Fleet]]:
    """Return a builder of the fleet; `nginx_test` / `nginx_reload` replace nginx's commands.

    `versions` gives web-1 and web-2 a `Meta.version` each; other keywords are config sections.
    """
    doubles: list[ConsulDouble] = []

    def build(
        nginx_test: list[str] | None = None,
        nginx_reload: list[str] | None = None,
        versions: tuple[str, str] | None = None,
        **sections,
    ) -> Fleet:
        sites = {name: static_site_factory({"index.html": name}) for name in ("web-1", "web-2")}
        addresses = {name: site.address for name, site in sites.items()}
        haproxy = haproxy_factory(
            [Member(addresses["web-1"], name="s1"), Member(addresses["web-2"], name="s2")],
            backend="web",
        )
        nginx = nginx_factory([addresses["web-1"], addresses["web-2"]], upstream="web")
        double = ConsulDouble().__enter__()
        doubles.append(double)
        for number, name in enumerate(("web-1", "web-2"), start=1):
            site = sites[name]
            double.register_node(f"node-{number}", "127.0.0.1")
            meta = {"version": versions[number - 1]} if versions else None
            double.register_service(
                f"node-{number}", name, "web", address="127.0.0.1", port=site.port, meta=meta
            )
        qd = make_qd(
            consul=ConsulConfig(url=double.url, wait_s=1, token_env=""),
            haproxy=(
                HAProxyConfig(
                    name="edge", stats_url=haproxy.stats_csv_url, runtime=haproxy.runtime_url
                ),
            ),
            nginx=(
                NginxConfig(
                    name="push",
                    status_url=nginx.status_url,
                    upstream_conf=str(nginx.upstream_conf),
                    reload=tuple(nginx_reload or [*nginx.command, "-s", "reload"]),
                    test=tuple(nginx_test or [*nginx.command, "-t"]),
                ),
            ),
            **sections,
        )
        fleet = Fleet(qd, double, haproxy, nginx, addresses)
        fleet.collect()
        return fleet

    yield build
    for double in doubles:
        double.__exit__(None, None, None)


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    """The fleet with nginx's real test and reload commands."""
    return make_fleet()


@pytest.fixture
def adapters(fleet) -> Iterator[dict]:
    """The fleet's adapters, closed at the end."""
    made = fleet.adapters()
    yield made
    close_adapters(made)


def missing_config(nginx: NginxServer) -> list[str]:
    """An `nginx -t` that fails for real: its -c names a file that does not exist."""
    gone = nginx.prefix / "conf" / "gone.conf"
    return [nginx.binary, "-p", str(nginx.prefix), "-c", str(gone), "-e", "stderr", "-t"]


def reload_without_master(nginx: NginxServer, tmp: Path) -> list[str]:
    """An `nginx -s reload` that fails for real: its pid file names no running master."""
    config = nginx.config_path.read_text()
    pid_line = next(line for line in config.splitlines() if line.startswith("pid "))
    copy = tmp / "nginx-no-master.conf"
    copy.write_text(config.replace(pid_line, f"pid {tmp}/none.pid;"))
    return [nginx.binary, "-p", str(nginx.prefix), "-c", str(copy), "-e", "stderr", "-s", "reload"]


class PushFleet:
    """Two WebSocket servers s1, s2 behind HAProxy `edge` (backend `push`), collected."""

    def __init__(self, haproxy, servers, qd) -> None:
        self.haproxy, self.servers, self.qd = haproxy, servers, qd

    def collect(self) -> None:
        """One pass of every collector."""
        for source in configured_sources(self.qd.config, self.qd.clock):
            assert run_pass(self.qd, source.collector).ok

    def scur(self, server: str) -> int:
        """The server's current sessions in `show stat`."""
        lines = self.haproxy.send_runtime("show stat").splitlines()
        header = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "push" and row.get("svname") == server:
                return int(row["scur"] or 0)
        raise AssertionError(f"no server push/{server} in show stat")


@pytest.fixture
def push_fleet(haproxy_factory, websocket_server_factory, make_qd) -> PushFleet:
    """WebSocket servers behind a real HAProxy, for drains that wait for their connections."""
    servers = [websocket_server_factory() for _ in range(2)]
    haproxy = haproxy_factory([s.address for s in servers], backend="push", http_check="/health")
    config = HAProxyConfig(name="edge", stats_url=haproxy.stats_csv_url,
                           runtime=haproxy.runtime_url)  # fmt: skip
    fleet = PushFleet(haproxy, servers, make_qd(haproxy=(config,)))
    wait_for(lambda: haproxy.send_runtime("show stat").count(",UP,") >= 2, "s1 and s2 up")
    fleet.collect()
    return fleet
