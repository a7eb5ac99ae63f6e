"""Fixtures for the Consul collector: the double, Quarterdeck on it, the API, a request counter."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from app.auth.accounts import create_user
from app.collection.runner import run_pass
from app.collection.scheduler import CollectionService
from app.config import ConsulConfig
from app.context import Quarterdeck
from app.factory import create_app
from collectors.consul import ConsulCollector
from demo.consul import ConsulDouble
from demo.fleet_seed import SeededInstance, seed_demo_fleet
from tests.conftest import PASSWORD, sign_in

TOKEN_ENV = "QD_TEST_CONSUL_TOKEN"
WATCH_THREAD_PREFIX = "consul-watch-"


@pytest.fixture(autouse=True)
def _no_consul_environment(monkeypatch) -> None:
    """py-consul reads CONSUL_HTTP_*; tests that need one set it themselves."""
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)


def eventually(condition: Callable[[], Any], timeout: float = 5.0, every: float = 0.02) -> Any:
    """Poll until condition() is truthy and return it; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(every)


def reregister(double: ConsulDouble, service_id: str, **changes: Any) -> None:
    """Register an instance again as it is, but for `changes` (port=, address=, meta=...)."""
    service = double.catalog.services[service_id]
    checks = [
        {"CheckID": c.check_id, "Name": c.name, "Status": c.status, "Output": c.output}
        for c in double.catalog.checks[service.node].values()
        if c.service_id == service_id and not c.check_id.startswith("_service_maintenance:")
    ]
    fields = {
        "address": service.address,
        "port": service.port,
        "tags": list(service.tags),
        "meta": dict(service.meta),
        "kind": service.kind,
        "proxy": service.proxy,
        **changes,
    }
    double.register_service(service.node, service_id, service.name, checks=checks, **fields)


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Any]:
    """Return the poll-with-deadline helper."""
    return eventually


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    """A running Consul double with an empty fleet; stopped at the end."""
    with ConsulDouble() as running:
        yield running


@pytest.fixture
def fleet(double) -> list[SeededInstance]:
    """The demo mesh (gateway -> orders -> payments/inventory, and push) in the double."""
    return seed_demo_fleet(double)


@pytest.fixture
def make_consul_qd(make_qd, double) -> Callable[..., Quarterdeck]:
    """Return a factory of Quarterdeck contexts whose [consul] section points at the double."""

    def factory(store: str | None = None, **consul_fields: Any) -> Quarterdeck:
        fields = {"url": double.url, "wait_s": 1, "token_env": TOKEN_ENV, **consul_fields}
        return make_qd(store, consul=ConsulConfig(**fields))

    return factory


@pytest.fixture
def consul_qd(make_consul_qd) -> Quarterdeck:
    """Quarterdeck on a fresh SQLite store, configured for the double."""
    return make_consul_qd()


def _wait_for_watch_threads_to_end(timeout: float = 5.0) -> None:
    eventually(
        lambda: not [t for t in threading.enumerate() if t.name.startswith(WATCH_THREAD_PREFIX)],
        timeout=timeout,
    )


@pytest.fixture
def make_collector(double) -> Iterator[Callable[[Quarterdeck], ConsulCollector]]:
    """Return a factory of collectors built from a context's config, the way `serve` builds them.

    At the end every collector is closed and the double stopped, which ends their long polls.
    """
    made: list[ConsulCollector] = []

    def factory(qd: Quarterdeck) -> ConsulCollector:
        collector = ConsulCollector.from_config(qd.config.consul, clock=qd.clock)
        made.append(collector)
        return collector

    yield factory
    for collector in made:
        collector.close()
    double.stop()
    for collector in made:
        collector.close(timeout=5)
        assert not collector.watching
    _wait_for_watch_threads_to_end()


@pytest.fixture
def collect_until() -> Callable[..., Any]:
    """Return a helper that runs passes (each blocks until Consul changes) until a condition holds.

    Every pass must succeed; the condition's truthy value is returned.
    """

    def run(
        qd: Quarterdeck, collector: ConsulCollector, condition: Callable[[], Any], timeout=5.0
    ) -> Any:
        def one_pass() -> Any:
            result = run_pass(qd, collector)
            assert result.ok, result.error
            return condition()

        return eventually(one_pass, timeout=timeout, every=0)

    return run


@pytest.fixture
def collection(double) -> Iterator[Callable[[Quarterdeck], CollectionService]]:
    """Return a starter of the real CollectionService (scheduler and watch loops) for a context."""
    started: list[CollectionService] = []

    def start(qd: Quarterdeck) -> CollectionService:
        service = CollectionService(qd)
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop()
    double.stop()
    _wait_for_watch_threads_to_end()


class Api:
    """The JSON API and pages of one app, read by a signed-in viewer.

    A session, not an API token: a token request also writes its last use, and on SQLite that
    write can race the collector's (see the report on this issue).
    """

    def __init__(self, qd: Quarterdeck) -> None:
        with qd.store.session() as db:
            create_user(db, "consul-viewer", "viewer", PASSWORD)
        self.client = create_app(qd=qd).test_client()
        assert sign_in(self.client, "consul-viewer").status_code == 302

    def get(self, path: str, status: int = 200) -> dict:
        response = self.client.get(path)
        assert response.status_code == status, response.get_data(as_text=True)
        return response.json

    def page(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200
        return response.get_data(as_text=True)

    def services(self, query: str = "") -> dict[str, dict]:
        body = self.get(f"/api/v1/services{query}")
        return {s["name"]: s for s in body["services"]}

    def service(self, name: str) -> dict:
        return self.get(f"/api/v1/services/{name}")

    def instance(self, service: str, instance_id: str) -> dict:
        [found] = [i for i in self.service(service)["instances"] if i["id"] == instance_id]
        return found

    def source(self, name: str = "consul") -> dict:
        [found] = [s for s in self.get("/api/v1/sources")["sources"] if s["name"] == name]
        return found


@pytest.fixture
def make_api() -> Callable[[Quarterdeck], Api]:
    """Return a factory of API readers for a context."""
    return Api


class CountingProxy:
    """An HTTP proxy in front of the double that records every request it forwards."""

    def __init__(self, target: ConsulDouble) -> None:
        self.target = target
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self._lock = threading.Lock()
        self._held: dict[str, threading.Event] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                with proxy._lock:
                    proxy.requests.append((split.path, parse_qs(split.query)))
                upstream = http.client.HTTPConnection(target.host, target.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request("GET", self.path, headers=headers)
                    answer = upstream.getresponse()
                    body = answer.read()
                finally:
                    upstream.close()
                proxy._wait_if_held(split.path)
                self.send_response_only(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def hold(self, path: str) -> threading.Event:
        """Hold Consul's answers to `path` (as a slow network would) until the event is set."""
        release = threading.Event()
        with self._lock:
            self._held[path] = release
        return release

    def _wait_if_held(self, path: str) -> None:
        with self._lock:
            release = self._held.get(path)
        if release is not None:
            release.wait(timeout=60)

    def paths_since(self, start: int) -> list[str]:
        with self._lock:
            return [path for path, _ in self.requests[start:]]

    def stop(self) -> None:
        with self._lock:
            for release in self._held.values():
                release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def counting_proxy(double) -> Iterator[CountingProxy]:
    """A request-counting proxy in front of the double."""
    proxy = CountingProxy(double)
    yield proxy
    proxy.stop()
