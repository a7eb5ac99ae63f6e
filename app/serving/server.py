"""Quarterdeck's HTTP server: uvicorn running the ASGI face of the app, in front or in a thread."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time

import uvicorn
from flask import Flask

from app.serving.asgi import QuarterdeckASGI

STOP_TIMEOUT_S = 10.0


class _Stopped(Exception):
    """SIGTERM, turned into a clean return from Server.run()."""


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, asgi: QuarterdeckASGI) -> None:
        super().__init__(config)
        self.asgi = asgi

    async def shutdown(self, sockets=None) -> None:
        # Open streams never end by themselves: end them first, or uvicorn waits for them.
        await self.asgi.streams.close_streams("shutdown")
        await super().shutdown(sockets)


class Server:
    """Serve a Flask app: pages and API in `threads` workers, live streams on the event loop.

    The socket is bound at construction, so `port` is known (and a bind error raised) before
    anything runs. `run()` serves in the calling thread until SIGINT/SIGTERM (or `stop()`);
    `start()` serves in a background thread until `stop()`.
    """

    def __init__(self, app: Flask, host: str, port: int, *, threads: int) -> None:
        self.asgi = QuarterdeckASGI(app, threads=threads)
        self.socket = _bind(host, port)
        self.host = host
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(
            self.asgi,
            lifespan="on",
            http="h11",
            loop="asyncio",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            # The app decides whom to trust for X-Forwarded-For ([auth] trusted_proxies); uvicorn
            # would otherwise rewrite the client address for any request from loopback.
            proxy_headers=False,
            backlog=2048,
            timeout_graceful_shutdown=5,
        )
        self._server = _Uvicorn(config, self.asgi)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL the server answers on."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Tell whether the background thread of start() still serves."""
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM (main thread) or stop(); then return."""
        on_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if on_main else None
        try:
            # uvicorn handles the signals itself, then raises them again once it has stopped.
            with contextlib.suppress(KeyboardInterrupt, _Stopped):
                self._server.run(sockets=[self.socket])
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.socket.close()

    def start(self, timeout: float = STOP_TIMEOUT_S) -> Server:
        """Serve in a background thread; return once the server accepts requests."""
        self._thread = threading.Thread(target=self.run, name="http-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP server stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End open streams, finish requests in flight and stop (from another thread)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)


def _stop_on_sigterm(signum, frame) -> None:
    raise _Stopped


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
