"""The push service: one instance holding WebSocket connections, with /health and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import weakref
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from demo.fleet.faults import FaultSwitch
from demo.fleet.metrics import InstanceMetrics
from demo.fleet.topology import LOOPBACK
from demo.fleet.tracing import FleetTracing, answer_span, start_server_span

WS_ROUTE = "/ws"
TICK_S = 15.0
FAULT_POLL_S = 1.0
# websockets: a ping every 30 s finds dead peers (and keeps idle proxies from timing out).
PING_INTERVAL_S = 30.0
# WebSocket close code 1012: "service restart", so clients reconnect.
RESTART_CODE = 1012


class PushInstance:
    """Open connections, the gauge that counts them, and the fault switch."""

    def __init__(
        self,
        instance_id: str,
        version: str,
        faults: FaultSwitch,
        metrics: InstanceMetrics,
        tracing: FleetTracing,
    ):
        self.instance_id = instance_id
        self.version = version
        self.faults = faults
        self.metrics = metrics
        self.gauge = metrics.connections()
        self.open: set[ServerConnection] = set()
        self._dropped_generation = 0
        self.tracer = tracing.tracer
        # The SERVER span of each handshake in progress, ended by process_response.
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, object] = (
            weakref.WeakKeyDictionary()
        )

    async def handle(self, connection: ServerConnection) -> None:
        """Hold one connection: greet it, echo what it sends, until it closes."""
        self.open.add(connection)
        self.gauge.set(len(self.open))
        self.metrics.served(WS_ROUTE, "GET", 101, 0.0)
        try:
            await connection.send(json.dumps({"type": "hello", "instance": self.instance_id}))
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.open.discard(connection)
            self.gauge.set(len(self.open))

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer /health and /metrics over plain HTTP; refuse handshakes when told to."""
        path = request.path.partition("?")[0]
        if path == "/health":
            if self.faults.has("unhealthy"):
                return connection.respond(
                    HTTPStatus.SERVICE_UNAVAILABLE, "unhealthy: injected fault\n"
                )
            return connection.respond(HTTPStatus.OK, f"ok {self.version}\n")
        if path == "/metrics":
            response = connection.respond(HTTPStatus.OK, "")
            response.body = generate_latest(self.metrics.registry)
            del response.headers["Content-Type"]
            del response.headers["Content-Length"]
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            response.headers["Content-Length"] = str(len(response.body))
            return response
        route = WS_ROUTE if path == WS_ROUTE else ""
        port = connection.local_address[1]
        self._handshakes[connection] = start_server_span(
            self.tracer, "GET", route, path, request.headers, port, LOOPBACK
        )
        if path != WS_ROUTE:
            self.metrics.served("", "GET", 404, 0.0)
            return connection.respond(HTTPStatus.NOT_FOUND, f"no route {path}\n")
        if self.faults.has("refuse"):
            self.metrics.served(WS_ROUTE, "GET", 503, 0.0)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refusing: injected fault\n")
        return None

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        """End the span of a handshake with its answer (101 once the connection is open)."""
        span = self._handshakes.pop(connection, None)
        if span is not None:
            answer_span(span, response.status_code)
            span.end()

    async def tick(self, stop: asyncio.Event) -> None:
        """Push a small message to every client now and then; act on `drop` faults."""
        last_tick = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FAULT_POLL_S)
            modes = self.faults.modes()
            if "drop" in modes and self.faults.generation != self._dropped_generation:
                self._dropped_generation = self.faults.generation
                for connection in list(self.open):
                    await connection.close(RESTART_CODE, "injected fault: drop")
            if time.monotonic() - last_tick >= TICK_S:
                last_tick = time.monotonic()
                message = json.dumps(
                    {"type": "tick", "instance": self.instance_id, "at": time.time()}
                )
                broadcast(self.open, message)


def serve_push(
    port: int, instance: PushInstance, stop: threading.Event, ready: threading.Event
) -> None:
    """Serve WebSockets (and /health, /metrics) until `stop` is set; set `ready` once bound."""

    async def main() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=lambda: (stop.wait(), loop.call_soon_threadsafe(stopped.set)), daemon=True
        ).start()
        async with serve(
            instance.handle,
            LOOPBACK,
            port,
            process_request=instance.process_request,
            process_response=instance.process_response,
            ping_interval=PING_INTERVAL_S,
        ) as server:
            ready.set()
            ticker = asyncio.create_task(instance.tick(stopped))
            await stopped.wait()
            ticker.cancel()
            server.close(close_connections=True)
            await server.wait_closed()

    asyncio.run(main())
