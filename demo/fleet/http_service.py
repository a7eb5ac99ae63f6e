"""The HTTP services of the fleet (gateway, orders, payments, inventory): one instance."""

from __future__ import annotations

import ctypes
import http.client
import json
import random
import sys
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from demo.fleet.agent import Upstreams
from demo.fleet.faults import FaultSwitch
from demo.fleet.metrics import InstanceMetrics
from demo.fleet.order_clients import STALL_HEADER
from demo.fleet.orders_keys import OrderKeys
from demo.fleet.topology import LOOPBACK, Call, FleetService, Route
from demo.fleet.tracing import FleetTracing, answer_span, called_span, client_span, server_span
from fleet.degrade import NOT_DEGRADED, DegradeState, DegradeSwitch

CALL_TIMEOUT_S = 2.0
SLOW_EXTRA_S = 0.4
SPIKE_EXTRA_S = 0.8
SPIKE_SHARE = 0.25
MAX_BULK_WORK_MS = 5000.0
# STALL_HEADER: the demo's order clients ask an orders instance to stop the world this long
# while it places the order; not part of the order, so a retry's payload is the same.
MAX_STALL_MS = 5000


def stop_the_world(ms: int) -> None:
    """Freeze every thread of this process for `ms`, as a long GC pause or a swapped-out
    process would: poll(2) with no descriptors, called through ctypes.PyDLL, which keeps the
    interpreter lock for the whole call (the guard's watchdog thread cannot run either)."""
    libc = ctypes.PyDLL(None)
    libc.poll.argtypes = (ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int)
    libc.poll(None, 0, ms)


def _stall_ms(value: str | None) -> int:
    if not value or not value.isascii() or not value.isdigit():
        return 0
    return min(int(value), MAX_STALL_MS)


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
        tracing: FleetTracing,
        *,
        degrade: DegradeSwitch | None = None,
        order_keys: OrderKeys | None = None,
    ) -> None:
        self.order_keys = order_keys  # orders with a Redis: POST /orders honours Idempotency-Key
        self.service = service
        self.degrade = degrade
        self.instance_id = instance_id
        self.version = version
        self.upstreams = upstreams
        self.faults = faults
        self.metrics = metrics
        self.tracer = tracing.tracer
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
        degraded = self.degrade.state if self.degrade is not None else NOT_DEGRADED
        skipped = [call for call in route.calls if call.feature and degraded.is_off(call.feature)]
        if degraded.degraded:
            mark_degraded(trace.get_current_span(), degraded, skipped)
        for call in route.calls:
            if call in skipped:
                continue
            target = self.upstreams.pick(call.service)
            if target is None:
                return 503, {"error": f"no passing instance of {call.service}"}
            address, port = target
            started = time.monotonic()
            body = b"{}" if call.method == "POST" else None
            headers = {"Content-Type": "application/json"} if body else {}
            with client_span(
                self.tracer, call.method, address, port, call.path, headers, call.path
            ) as span:
                try:
                    status = _request(address, port, call.method, call.path, body, headers)
                except (OSError, http.client.HTTPException) as error:
                    status = 0
                    called_span(span, 0, error)
                else:
                    called_span(span, status)
            self.metrics.called(address, port, call.method, status, time.monotonic() - started)
            if status == 0 or status >= 500:
                what = f"answered {status}" if status else "did not answer"
                return 502, {"error": f"{call.service} at {address}:{port} {what}"}
        body = {"ok": True, "service": self.service.name, "instance": self.instance_id}
        if degraded.degraded:
            body["degraded"] = {"level": degraded.level, "skipped": [c.feature for c in skipped]}
        return 200, body


def mark_degraded(span: trace.Span, state: DegradeState, skipped: list[Call]) -> None:
    """Say on the request's span that the service is degraded, and which calls it skipped."""
    span.set_attribute("quarterdeck.degrade.level", state.level or "")
    span.set_attribute("quarterdeck.degrade.features_off", sorted(state.features_off))
    for call in skipped:
        span.add_event(
            "degraded: call skipped",
            {
                "quarterdeck.degrade.feature": call.feature,
                "peer.service": call.service,
                "url.path": call.path,
            },
        )


def _request(address: str, port: int, method: str, path: str, body, headers) -> int:
    """Make one HTTP call and return the answer's status (the body is read and dropped)."""
    connection = http.client.HTTPConnection(address, port, timeout=CALL_TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


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
        raw = self.rfile.read(min(length, 65536)) if length else b""
        path = self.path.partition("?")[0]
        if path == "/health":
            self._health(instance)
            return
        if path == "/metrics" and method == "GET":
            self._send(200, generate_latest(instance.metrics.registry), CONTENT_TYPE_LATEST)
            return
        started = time.monotonic()
        route = instance.routes.get((method, path))
        route_path = route.path if route else ""
        with server_span(
            instance.tracer,
            method,
            route_path,
            path,
            self.headers,
            self.server.server_port,
            LOOPBACK,
        ) as span:
            if route is None:
                # OpenTelemetry leaves http.route out when no route matched.
                status, body = 404, {"error": f"no route {method} {path}"}
            elif instance.order_keys is not None and route.path == "/orders":
                key = self.headers.get("Idempotency-Key")
                stall_ms = _stall_ms(self.headers.get(STALL_HEADER))
                place = partial(self._answer, instance, route, started=started, stall_ms=stall_ms)
                status, body = instance.order_keys.answer(key, raw, place)
            else:
                status, body = self._answer(instance, route)
            answer_span(span, status)
            self._json(status, body)
        instance.metrics.served(route_path, method, status, time.monotonic() - started)

    def _answer(
        self,
        instance: ServiceInstance,
        route: Route,
        order: dict | None = None,
        *,
        started: float = 0.0,
        stall_ms: int = 0,
    ) -> tuple[int, dict]:
        if stall_ms:
            stop_the_world(stall_ms)
        modes = instance.faults.modes()
        pause = instance.delay(route.latency_ms) + (SLOW_EXTRA_S if "slow" in modes else 0)
        if order and order.get("bulk"):  # the demo clients' slow orders (order_clients.py)
            pause += min(float(order.get("work_ms") or 0), MAX_BULK_WORK_MS) / 1000
        if "spikes" in modes and instance.chance(SPIKE_SHARE):
            pause += SPIKE_EXTRA_S
        time.sleep(pause)
        deadline_ms = order.get("deadline_ms") if order else None
        if isinstance(deadline_ms, int) and (time.monotonic() - started) * 1000 > deadline_ms:
            # The client's deadline passed before the order was charged: give up on it.
            return 504, {"error": f"the order's {deadline_ms} ms deadline passed"}
        if "errors" in modes and instance.chance(0.5):
            return 503, {"error": "injected fault: errors"}
        if instance.chance(route.error_rate):
            return 500, {"error": "internal error"}
        return instance.call(route)

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

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            return  # a client that gave up waiting (the demo's impatient order clients do)
        super().handle_error(request, client_address)
