"""A real metrics target with steady traffic, and a proxy that counts requests to Prometheus."""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from prometheus_client import Gauge, Histogram

from tests.fixtures.processes import LOOPBACK
from tests.fixtures.servers import ScrapeTarget

# What each fake request of a service looks like: (status code, duration in seconds).
OK_FAST = ("200", 0.02)
ERROR_SLOW = ("500", 0.4)


@dataclass
class FleetMetrics:
    """A /metrics endpoint exposing the OTel HTTP histogram and the push gauge for services."""

    target: ScrapeTarget
    duration: Histogram
    push: Gauge
    # service -> requests per tick, and how many of every 10 fail
    traffic: dict[str, tuple[int, int]] = field(default_factory=dict)

    def serve(self, service: str, per_tick: int, errors_in_ten: int = 0) -> None:
        """Have `service` answer `per_tick` requests every 50 ms, `errors_in_ten` of 10 failing."""
        self.traffic[service] = (per_tick, errors_in_ten)

    def tick(self, n: int) -> None:
        """Record one 50 ms tick of traffic for every service."""
        for service, (per_tick, errors_in_ten) in list(self.traffic.items()):
            for i in range(per_tick):
                status, seconds = ERROR_SLOW if (n * per_tick + i) % 10 < errors_in_ten else OK_FAST
                self.duration.labels(service, "/api", status).observe(seconds)


@pytest.fixture
def fleet_metrics(scrape_target_factory) -> Iterator[FleetMetrics]:
    """Start a metrics endpoint and a thread that keeps its services' traffic steady."""
    target = scrape_target_factory()
    duration = Histogram(
        "http_server_request_duration_seconds",
        "Duration of HTTP server requests.",
        ["service", "http_route", "http_response_status_code"],
        registry=target.registry,
    )
    push = Gauge(
        "push_connections_active",
        "Open push connections.",
        ["service", "instance"],
        registry=target.registry,
    )
    fleet = FleetMetrics(target, duration, push)
    stop = threading.Event()

    def run() -> None:
        n = 0
        while not stop.wait(0.05):
            fleet.tick(n)
            n += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield fleet
    stop.set()
    thread.join()


@dataclass
class RecordingProxy:
    """An HTTP proxy in front of Prometheus that counts the requests by path."""

    url: str
    requests: Counter

    def count(self) -> int:
        """Return how many requests went through."""
        return sum(self.requests.values())

    def reset(self) -> None:
        """Forget the requests seen so far."""
        self.requests.clear()


@pytest.fixture
def recording_proxy_factory() -> Iterator[Callable[[str], RecordingProxy]]:
    """Return a function that starts a counting proxy to a loopback URL."""
    with contextlib.ExitStack() as stack:

        def start(upstream: str) -> RecordingProxy:
            parts = urlsplit(upstream)
            seen: Counter = Counter()
            lock = threading.Lock()

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                    with lock:
                        seen[urlsplit(self.path).path] += 1
                    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                    try:
                        connection.request("GET", self.path)
                        answer = connection.getresponse()
                        body = answer.read()
                    finally:
                        connection.close()
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.getheader("Content-Type", ""))
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, format: str, *args: object) -> None:
                    """Keep request lines out of the test output."""

            httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
            thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            stack.callback(httpd.server_close)
            stack.callback(thread.join)
            stack.callback(httpd.shutdown)
            return RecordingProxy(f"http://{LOOPBACK}:{httpd.server_port}", seen)

        yield start


def settle(seconds: float) -> None:
    """Let Prometheus scrape a few more times."""
    time.sleep(seconds)
