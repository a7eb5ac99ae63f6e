"""The HTTP services of the fleet (gateway, orders, payments, inventory): one instance."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from demo.fleet.agent import Upstreams
from demo.fleet.faults import FaultSwitch
from demo.fleet.metrics import InstanceMetrics
from demo.fleet.topology import FleetService, Route

CALL_TIMEOUT_S = 2.0
SLOW_EXTRA_S = 0.4


class ServiceInstance:
    """What a request handler needs: the service's routes, upstreams, faults and metrics."""

    def __init__(
        self,
        service: FleetService,
        instance_id: str,
        version: str,
        upstreams: Upstreams,
        faults: FaultSwitch,
        metrics: InstanceMetrics,
    ) -> None:
        self.service = service
        self.instance_id = instance_id
        self.version = version
        self.upstreams = upstreams
        self.faults = faults
        self.metrics = metrics
        self.routes = {(r.method, r.path): r for r in service.routes}
        self.random = random.Random()
        self._random_lock = threading.Lock()

    def chance(self, probability: float) -> bool:
        """Return True with the given probability."""
        with self._random_lock:
            return self.random.random() < probability

    def delay(self, mean_ms: float) -> float:
        """Return a latency around mean_ms (log-normal, like real request times)."""
        with self._random_lock:
            return self.random.lognormvariate(0, 0.5) * mean_ms / 1000.0

    def call(self, route: Route) -> tuple[int, dict]:
        """Run the route's downstream calls; return the status and body to answer."""
        for call in route.calls:
            target = self.upstreams.pick(call.service)
            if target is None:
                return 503, {"error": f"no passing instance of {call.service}"}
            address, port = target
            started = time.monotonic()
            status = 0
            try:
                connection = http.client.HTTPConnection(address, port, timeout=CALL_TIMEOUT_S)
                try:
                    body = b"{}" if call.method == "POST" else None
                    headers = {"Content-Type": "application/json"} if body else {}
                    connection.request(call.method, call.path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                finally:
                    connection.close()
            except (OSError, http.client.HTTPException):
                status = 0
            self.metrics.called(address, port, call.method, status, time.monotonic() - started)
            if status == 0 or status >= 500:
                what = f"answered {status}" if status else "did not answer"
                return 502, {"error": f"{call.service} at {address}:{port} {what}"}
        return 200, {"ok": True, "service": self.service.name, "instance": self.instance_id}


class Handler(BaseHTTPRequestHandler):
    """Routes, /health and /metrics of one instance."""

    server: InstanceHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # no access log: the metrics count every request

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("POST")

    def _handle(self, method: str) -> None:
        instance = self.server.instance
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))
        path = self.path.partition("?")[0]
        if path == "/health":
            self._health(instance)
            return
        if path == "/metrics" and method == "GET":
            self._send(200, generate_latest(instance.metrics.registry), CONTENT_TYPE_LATEST)
            return
        started = time.monotonic()
        route = instance.routes.get((method, path))
        if route is None:
            # OpenTelemetry leaves http.route out when no route matched.
            self._json(404, {"error": f"no route {method} {path}"})
            instance.metrics.served("", method, 404, time.monotonic() - started)
            return
        modes = instance.faults.modes()
        pause = instance.delay(route.latency_ms) + (SLOW_EXTRA_S if "slow" in modes else 0)
        time.sleep(pause)
        if "errors" in modes and instance.chance(0.5):
            status, body = 503, {"error": "injected fault: errors"}
        elif instance.chance(route.error_rate):
            status, body = 500, {"error": "internal error"}
        else:
            status, body = instance.call(route)
        self._json(status, body)
        instance.metrics.served(route.path, method, status, time.monotonic() - started)

    def _health(self, instance: ServiceInstance) -> None:
        if instance.faults.has("unhealthy"):
            self._json(503, {"status": "unhealthy", "reason": "injected fault"})
        else:
            self._json(200, {"status": "ok", "version": instance.version})

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # Which instance answered, errors included (behind a balancer the caller cannot tell).
        self.send_header("X-Served-By", self.server.instance.instance_id)
        self.end_headers()
        self.wfile.write(body)


class InstanceHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one instance."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, instance: ServiceInstance) -> None:
        self.instance = instance
        super().__init__(("127.0.0.1", port), Handler)
