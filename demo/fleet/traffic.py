"""The demo's users: `python -m demo.fleet.traffic --http URL ... --ws URL ...`.

A few requests a second to the gateway (through HAProxy when the demo runs it) and a few
hundred WebSocket clients on push (through nginx and HAProxy when present, else direct), each
staying a while, then leaving and coming back, and reconnecting after a drop. With `--traces`
each request and each WebSocket handshake is the root span of its trace (service `traffic`),
sent with the OpenTelemetry SDK like the fleet's own spans.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import logging
import random
import signal
import sys
import threading
from urllib.parse import urlsplit

from opentelemetry import trace
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException

from demo.fleet.tracing import FleetTracing, called_span, client_span

log = logging.getLogger("demo.fleet.traffic")
CHECKOUT_SHARE = 0.7  # the rest asks for stock
MEAN_SESSION_S = 120.0
RAMP_UP_S = 5.0
SERVICE = "traffic"
VERSION = "1.0.0"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="demo.fleet.traffic")
    parser.add_argument("--http", action="append", default=[], help="a gateway base URL")
    parser.add_argument("--ws", action="append", default=[], help="a push WebSocket URL")
    parser.add_argument("--rps", type=float, default=3.0, help="requests per second")
    parser.add_argument("--clients", type=int, default=300, help="WebSocket clients")
    parser.add_argument("--mean-session-s", type=float, default=MEAN_SESSION_S)
    parser.add_argument("--traces", help="the OTLP/HTTP traces endpoint (…/v1/traces)")
    parser.add_argument("--orders", action="append", default=[], help="an orders instance URL")
    parser.add_argument("--order-rate", type=float, default=1.0, help="keyed orders per second")
    return parser.parse_args(argv)


def send_requests(urls: list[str], rps: float, stop: threading.Event, tracer: trace.Tracer):
    """Call the gateway about `rps` times a second, spread at random (Poisson arrivals)."""
    chooser = random.Random()
    while not stop.wait(chooser.expovariate(rps)):
        base = urlsplit(chooser.choice(urls))
        path = "/api/checkout" if chooser.random() < CHECKOUT_SHARE else "/api/stock"
        headers: dict[str, str] = {}
        with client_span(tracer, "GET", base.hostname, base.port, path, headers, path) as span:
            connection = http.client.HTTPConnection(base.hostname, base.port, timeout=5)
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                called_span(span, response.status)
            except (OSError, http.client.HTTPException) as error:
                called_span(span, 0, error)
                log.debug("GET %s%s: %s", base.netloc, path, error)
            finally:
                connection.close()


async def open_connection(url: str, tracer: trace.Tracer):
    """Open a WebSocket connection; the handshake is a span of its own."""
    where = urlsplit(url)
    headers: dict[str, str] = {}
    with client_span(
        tracer, "GET", where.hostname, where.port, where.path, headers, where.path
    ) as span:
        try:
            connection = await connect(
                url, additional_headers=headers, open_timeout=5, ping_interval=None, close_timeout=2
            )
        except InvalidStatus as error:
            called_span(span, error.response.status_code)
            raise
        except (OSError, InvalidHandshake, WebSocketException, TimeoutError) as error:
            called_span(span, 0, error)
            raise
        called_span(span, 101)
    return connection


async def hold_client(number: int, urls: list[str], mean_session_s: float, tracer: trace.Tracer):
    """One user: connect, stay a while (reading what is pushed), leave; again, for ever."""
    chooser = random.Random(number)
    url = urls[number % len(urls)]
    await asyncio.sleep(chooser.uniform(0, RAMP_UP_S))
    failures = 0
    while True:
        try:
            async with await open_connection(url, tracer) as ws:
                failures = 0
                stay = chooser.expovariate(1 / mean_session_s)
                try:
                    async with asyncio.timeout(stay):
                        async for _message in ws:
                            pass
                except TimeoutError:
                    pass  # the user leaves
        except (OSError, InvalidHandshake, WebSocketException, TimeoutError) as error:
            failures += 1
            log.debug("client %d on %s: %s", number, url, error)
        # Back off after failures (up to ~10 s), come back soon after a normal leave.
        pause = min(10.0, 0.5 * 2**failures) if failures else chooser.uniform(0.5, 3.0)
        await asyncio.sleep(pause * chooser.uniform(0.5, 1.5))


async def hold_clients(
    urls: list[str],
    count: int,
    mean_session_s: float,
    stop: asyncio.Event,
    tracer: trace.Tracer,
):
    """Run `count` clients until `stop` is set."""
    tasks = [
        asyncio.create_task(hold_client(n, urls, mean_session_s, tracer)) for n in range(count)
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    """Generate traffic until SIGTERM/SIGINT."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tracing = FleetTracing(SERVICE, f"{SERVICE}-1", VERSION, args.traces)
    if args.http and args.rps > 0:
        threading.Thread(
            target=send_requests,
            args=(args.http, args.rps, stop, tracing.tracer),
            name="http",
            daemon=True,
        ).start()

    if args.orders and args.order_rate > 0:
        from demo.fleet.order_clients import send_orders

        threading.Thread(
            target=send_orders,
            args=(args.orders, args.order_rate, stop),
            name="orders",
            daemon=True,
        ).start()

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=lambda: (stop.wait(), loop.call_soon_threadsafe(stopped.set)), daemon=True
        ).start()
        if args.ws and args.clients:
            await hold_clients(args.ws, args.clients, args.mean_session_s, stopped, tracing.tracer)
        else:
            await stopped.wait()

    log.info(
        "traffic: %.1f req/s to %s; %d WebSocket clients on %s",
        args.rps,
        ", ".join(args.http) or "nobody",
        args.clients,
        ", ".join(args.ws) or "nothing",
    )
    try:
        asyncio.run(run())
    finally:
        tracing.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
