"""The Consul double's HTTP server: routing, `?dc`, ACL tokens, faults, dropping connections."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from demo.consul.acl import ALLOW_ALL, ACLStore
from demo.consul.faults import FaultPlan, apply_fault
from demo.consul.protocol import (
    NO_BODY,
    Disconnect,
    HTTPError,
    Request,
    Response,
    Route,
    encode_json,
)

log = logging.getLogger(__name__)


class Dispatcher:
    """Route a request through ?dc, ACL and faults to its endpoint; serialize the answer."""

    def __init__(
        self,
        routes: Iterable[Route],
        datacenter: str,
        acl: ACLStore,
        faults: FaultPlan,
        is_live: Callable[[int], bool],
        race: Callable[[Request], None] | None = None,
    ) -> None:
        self._routes = list(routes)
        self._race = race
        self._is_live = is_live
        self._datacenter = datacenter
        self._acl = acl
        self._faults = faults
        self._counts_lock = threading.Lock()
        self._request_counts: Counter[tuple[str, str]] = Counter()

    def request_counts(self, reset: bool = False) -> Counter[tuple[str, str]]:
        """Requests answered so far by (method, path); reset starts again from zero."""
        with self._counts_lock:
            counts = Counter(self._request_counts)
            if reset:
                self._request_counts.clear()
            return counts

    def handle(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """Answer one request as (status, headers, body); raises Disconnect to drop it."""
        with self._counts_lock:
            self._request_counts[(request.method, request.path)] += 1
        try:
            response = self._answer(request)
        except HTTPError as error:
            return error.status, _text_headers(error.headers), error.reason.encode()
        except (KeyError, ValueError) as error:
            # A write racing another (say, a deregistration): Consul answers RPC errors with 500.
            log.warning("consul double: %s %s failed: %s", request.method, request.path, error)
            return 500, _text_headers({}), str(error).encode()
        headers = {**response.headers}
        if response.raw is not None:
            payload = response.raw
            headers["Content-Type"] = response.content_type
        elif response.body is NO_BODY:
            payload = b""
        else:
            payload = encode_json(response.body, pretty=request.has("pretty"))
            headers["Content-Type"] = response.content_type
        return response.status, headers, payload

    def _answer(self, request: Request) -> Response:
        if not self._is_live(request.epoch):
            raise Disconnect
        route, allowed = self._route(request)
        if route is None:
            if allowed:
                # Consul (agent/http.go): 405 names the method and lists the allowed ones.
                allow = ",".join(["OPTIONS", *allowed])
                raise HTTPError(405, f"method {request.method} not allowed", {"Allow": allow})
            raise HTTPError(404)
        dc = request.get("dc")
        if route.forwarded and dc and dc != self._datacenter:
            raise HTTPError(500, "No path to datacenter")
        self._authorize(request, route)
        taken = self._faults.take(
            request.path,
            blocking=request.get("index") not in ("", "0"),
            cas_write=request.method in ("PUT", "DELETE") and request.has("cas"),
        )
        fault = taken[0] if taken else None
        if fault == "spurious_wake":
            request.spurious = taken[1] if taken else ""
            fault = None
        if fault == "http_500":
            # The 500 Consul answers most often: a server without a leader.
            raise HTTPError(500, "No cluster leader")
        if fault == "disconnect":
            raise Disconnect
        if fault == "cas_conflict":
            if self._race is not None:
                self._race(request)
            fault = None
        response = route.handler(request)
        if fault is not None and response.status == 200 and response.body is not NO_BODY:
            apply_fault(fault, response)
        return response

    def _route(self, request: Request) -> tuple[Route | None, list[str]]:
        allowed: list[str] = []
        for route in self._routes:
            arg = route.matches(request.path)
            if arg is None:
                continue
            if request.method in route.methods:
                request.arg = arg
                return route, []
            allowed.extend(m for m in route.methods if m not in allowed)
        return None, allowed

    def _authorize(self, request: Request, route: Route) -> None:
        request.authz = ALLOW_ALL
        if route.acl is None:
            return
        # An unknown secret is 403 "ACL not found"; a known one reads what its policies allow.
        request.authz = self._acl.resolve(request.token())
        needed = route.acl(request)
        if needed is not None:
            request.authz.require(*needed)


def _text_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "text/plain; charset=utf-8"}


class DoubleHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that can drop every open connection when it stops."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        dispatcher: Dispatcher,
        epoch: Callable[[], int],
    ) -> None:
        self.dispatcher = dispatcher
        self.epoch = epoch
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stopping = False
        super().__init__(address, _Handler)

    def serve_until_stopped(self) -> None:
        """Accept connections until stop_serving(); no polling while idle."""
        while not self._stopping:
            self.handle_request()

    def stop_serving(self) -> None:
        """End serve_until_stopped(): set the flag, then wake the accept with a connection."""
        self._stopping = True
        host, port = self.server_address[:2]
        wake_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        with contextlib.suppress(OSError):
            socket.create_connection((wake_host, port), timeout=1).close()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection so stop() can close it."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut down every open connection, idle keep-alive ones included."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log unexpected handler errors; a client that hung up is not one."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("consul double: %s went away", client_address)
        else:
            log.exception("consul double: error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for a delayed ACK.
    disable_nagle_algorithm = True
    server: DoubleHTTPServer

    # BaseHTTPRequestHandler dispatches on do_<METHOD>.
    def do_GET(self) -> None:
        self._dispatch()

    do_PUT = do_DELETE = do_POST = do_GET

    def _dispatch(self) -> None:
        epoch = self.server.epoch()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=unquote(split.path),
            pairs=parse_qsl(split.query, keep_blank_values=True),
            headers=self.headers,  # type: ignore[arg-type]
            body=body,
            epoch=epoch,
        )
        try:
            status, headers, payload = self.server.dispatcher.handle(request)
        except Disconnect:
            self.close_connection = True
            return
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("consul double: " + format, *args)
