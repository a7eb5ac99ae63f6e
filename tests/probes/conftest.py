"""A real HTTP endpoint for probes to check, with one path per way an endpoint can answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Endpoint:
    """The server's URL, what it answers on `/health` (changeable) and the headers it saw."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.health = (200, "application/json", json.dumps({"status": "ok"}))
        self.seen_headers: list[dict[str, str]] = []


def _handler(endpoint_ref: list[Endpoint]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output quiet
            pass

        def _answer(self, status: int, kind: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's name)
            endpoint = endpoint_ref[0]
            endpoint.seen_headers.append(dict(self.headers))
            path, _, query = self.path.partition("?")
            if path == "/health":
                self._answer(*endpoint.health)
            elif path == "/slow":
                time.sleep(float(query.split("=")[1]) if query else 3)
                self._answer(200, "text/plain", "ok")
            elif path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/health")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._answer(404, "text/plain", "no such page")

        do_POST = do_GET  # noqa: N815

    return Handler


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A threaded HTTP server on a free loopback port, stopped after the test."""
    ref: list[Endpoint] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    server.daemon_threads = True
    ref.append(Endpoint(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ref[0]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
