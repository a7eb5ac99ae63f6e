"""What an instance asks of its local Consul agent: register, deregister, find its upstreams."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from demo.fleet.topology import LOOPBACK, FleetService, service_meta

log = logging.getLogger(__name__)

# Loopback agent: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
WAIT = "30s"  # blocking-query wait for upstream discovery


class ConsulAgent:
    """The Consul HTTP API of the agent an instance registers with (plain HTTP on loopback)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: object = None, timeout: float = 5.0):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310
        with _OPENER.open(request, timeout=timeout) as response:
            return response.headers, response.read()

    def register(
        self,
        service: FleetService,
        instance_id: str,
        port: int,
        version: str,
        canary: bool,
        check_interval: str,
        healthy: bool = True,
    ) -> None:
        """PUT /v1/agent/service/register with an HTTP check on the instance's own /health.

        The check starts as the instance finds itself (Consul's default is critical until the
        first probe, a blip on every start); the agent's probes take over from there.
        """
        tags = [*service.tags, *(["canary"] if canary else [])]
        definition = {
            "ID": instance_id,
            "Name": service.name,
            "Address": LOOPBACK,
            "Port": port,
            "Tags": tags,
            "Meta": service_meta(service, version),
            "Check": {
                "CheckID": f"service:{instance_id}",
                "Name": f"Service '{service.name}' check",
                "HTTP": f"http://{LOOPBACK}:{port}/health",
                "Interval": check_interval,
                "Timeout": "2s",
                "Status": "passing" if healthy else "critical",
            },
        }
        self._call("PUT", "/v1/agent/service/register", definition)

    def deregister(self, instance_id: str) -> None:
        """PUT /v1/agent/service/deregister/<id>."""
        self._call("PUT", f"/v1/agent/service/deregister/{quote(instance_id, safe='')}")

    def passing(self, service: str, index: int) -> tuple[int, list[tuple[str, int]]]:
        """Blocking query on the service's passing instances: (index, [(address, port)])."""
        path = f"/v1/health/service/{quote(service, safe='')}?passing=1"
        if index:
            path += f"&index={index}&wait={WAIT}"
        headers, body = self._call("GET", path, timeout=40.0)
        new_index = int(headers.get("X-Consul-Index") or 0)
        entries = json.loads(body)
        found = [
            (e["Service"].get("Address") or e["Node"]["Address"], int(e["Service"]["Port"]))
            for e in entries
        ]
        return new_index, found


class Upstreams:
    """The passing instances of the services an instance calls, kept fresh by blocking queries."""

    def __init__(
        self,
        agent: ConsulAgent,
        services: tuple[str, ...],
        via: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self._agent = agent
        # Services called through a balancer: its address, whatever Consul says.
        self._via = dict(via or {})
        self._lock = threading.Lock()
        self._known: dict[str, list[tuple[str, int]]] = {name: [] for name in services}
        self._random = random.Random()
        for name in (n for n in services if n not in self._via):
            threading.Thread(
                target=self._watch, args=(name,), name=f"watch-{name}", daemon=True
            ).start()

    def pick(self, service: str) -> tuple[str, int] | None:
        """Return one passing instance of the service at random, or None when none passes.

        A service called through a balancer answers the balancer's address.
        """
        if service in self._via:
            return self._via[service]
        with self._lock:
            known = self._known.get(service) or []
            return self._random.choice(known) if known else None

    def _watch(self, service: str) -> None:
        index = 0
        while True:
            try:
                new_index, found = self._agent.passing(service, index)
            except (OSError, ValueError, KeyError) as error:
                log.debug("discovery of %s failed: %s", service, error)
                time.sleep(1.0)
                index = 0
                continue
            with self._lock:
                self._known[service] = found
            # SOURCES.md: an index going backwards resets to 0; never below 1; rate-limit the loop.
            index = max(new_index, 1) if new_index >= index else 0
            time.sleep(0.2)
