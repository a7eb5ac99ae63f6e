"""The demo's users: `python -m demo.fleet.traffic --http URL ... --ws URL ...`.

A few requests a second to the gateway (through HAProxy when the demo runs it) and a few
hundred WebSocket clients on push (through nginx and HAProxy when present, else direct), each
staying a while, then leaving and coming back, and reconnecting after a drop.
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

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

log = logging.getLogger("demo.fleet.traffic")
CHECKOUT_SHARE = 0.7  # the rest asks for stock
MEAN_SESSION_S = 120.0
RAMP_UP_S = 5.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="demo.fleet.traffic")
    parser.add_argument("--http", action="append", default=[], help="a gateway base URL")
    parser.add_argument("--ws", action="append", default=[], help="a push WebSocket URL")
    parser.add_argument("--rps", type=float, default=3.0, help="requests per second")
    parser.add_argument("--clients", type=int, default=300, help="WebSocket clients")
    parser.add_argument("--mean-session-s", type=float, default=MEAN_SESSION_S)
    return parser.parse_args(argv)


def send_requests(urls: list[str], rps: float, stop: threading.Event) -> None:
    """Call the gateway about `rps` times a second, spread at random (Poisson arrivals)."""
    chooser = random.Random()
    while not stop.wait(chooser.expovariate(rps)):
        base = urlsplit(chooser.choice(urls))
        path = "/api/checkout" if chooser.random() < CHECKOUT_SHARE else "/api/stock"
        connection = http.client.HTTPConnection(base.hostname, base.port, timeout=5)
        try:
            connection.request("GET", path)
            connection.getresponse().read()
        except (OSError, http.client.HTTPException) as error:
            log.debug("GET %s%s: %s", base.netloc, path, error)
        finally:
            connection.close()


async def hold_client(number: int, urls: list[str], mean_session_s: float) -> None:
    """One user: connect, stay a while (reading what is pushed), leave; again, for ever."""
    chooser = random.Random(number)
    url = urls[number % len(urls)]
    await asyncio.sleep(chooser.uniform(0, RAMP_UP_S))
    failures = 0
    while True:
        try:
            async with connect(url, open_timeout=5, ping_interval=None, close_timeout=2) as ws:
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


async def hold_clients(urls: list[str], count: int, mean_session_s: float, stop: asyncio.Event):
    """Run `count` clients until `stop` is set."""
    tasks = [asyncio.create_task(hold_client(n, urls, mean_session_s)) for n in range(count)]
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
    if args.http and args.rps > 0:
        threading.Thread(
            target=send_requests, args=(args.http, args.rps, stop), name="http", daemon=True
        ).start()

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=lambda: (stop.wait(), loop.call_soon_threadsafe(stopped.set)), daemon=True
        ).start()
        if args.ws and args.clients:
            await hold_clients(args.ws, args.clients, args.mean_session_s, stopped)
        else:
            await stopped.wait()

    log.info(
        "traffic: %.1f req/s to %s; %d WebSocket clients on %s",
        args.rps,
        ", ".join(args.http) or "nobody",
        args.clients,
        ", ".join(args.ws) or "nothing",
    )
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
