"""Fixtures for the Consul double: a running double, py-consul clients, the demo fleet."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import consul
import pytest

from demo.consul import ConsulDouble
from demo.fleet_seed import SeededInstance, seed_demo_fleet


@pytest.fixture(autouse=True)
def _no_consul_environment(monkeypatch) -> None:
    """py-consul lets CONSUL_HTTP_TOKEN override the token argument; keep it out."""
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    """A running Consul double with an empty fleet."""
    with ConsulDouble() as running:
        yield running


@pytest.fixture
def make_client() -> Iterator[Callable[..., consul.Consul]]:
    """Return a factory of py-consul clients for a double; their connections close at the end."""
    clients: list[consul.Consul] = []

    def factory(target: ConsulDouble, token: str | None = None, **options: Any) -> consul.Consul:
        client = consul.Consul(host=target.host, port=target.port, token=token, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.http.session.close()


@pytest.fixture
def client(double, make_client) -> consul.Consul:
    """A py-consul client of the running double."""
    return make_client(double)


@pytest.fixture
def fleet(double) -> list[SeededInstance]:
    """The demo fleet loaded into the running double."""
    return seed_demo_fleet(double)


class Later:
    """Run a change on another thread after a delay, and remember when it ran."""

    def __init__(self, delay_s: float, change: Callable[[], object]) -> None:
        self.ran_at = 0.0
        self._delay_s = delay_s
        self._change = change
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Later:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.join(timeout=5)

    def _run(self) -> None:
        time.sleep(self._delay_s)
        self.ran_at = time.monotonic()
        self._change()


@pytest.fixture
def later() -> Callable[[float, Callable[[], object]], Later]:
    """Return a factory of delayed changes (use as a context manager)."""
    return Later
