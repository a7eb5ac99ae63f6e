"""Push connections at fleet scale: API and page latency at 1,000 instances; a change's delay.

Run: .venv/bin/python bench/push_api.py [--instances 1000] [--requests 100] [--json]

1. A fresh SQLite store is seeded through the balancer store writer with one HAProxy balancer
   of `--instances` members in 10 backends (an hour of 1-minute rollups, some members
   draining, one pool imbalanced), recorded as a successful pass so nothing is stale. The real
   server (`app.serving.Server`) then answers `/api/v1/push/connections`, the Push page and
   its live part, N requests each with a viewer token; p50/p95 against the goal of 150 ms.
   The page lists 100 instance rows at a time (every count, the chart, imbalance and drains
   cover all instances); `page_900` is its last page (`?offset=900`).
2. A real HAProxy in front of a real WebSocket server, collected by the real scheduler every
   `[collect] interval_s` (10 s): connections are opened (then closed) at a random moment and
   the API is read every 100 ms until its total shows them. Goal: within one poll interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import requests
from websockets.asyncio.server import serve
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.auth.accounts import create_token  # noqa: E402
from app.collection.runner import run_pass  # noqa: E402
from app.collection.scheduler import CollectionService  # noqa: E402
from app.config import CollectConfig, Config, HAProxyConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.serving import Server  # noqa: E402
from app.store import migrate  # noqa: E402
from collectors.balancers import BalancerProxy, BalancerServer, BalancerUpdate  # noqa: E402
from tests.fixtures.haproxy import HAPROXY_CONFIG, backend_block  # noqa: E402
from tests.fixtures.processes import (  # noqa: E402
    LOOPBACK,
    ServerProcess,
    free_ports,
    http_get,
    require_binary,
)

GOAL_MS = 150.0
BACKENDS = 10
HISTORY_MIN = 60


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class SeededBalancer:
    """A balancer source answering prepared snapshots (the store is seeded, no HAProxy runs)."""

    kind = "haproxy"

    def __init__(self, name: str) -> None:
        self.name = name
        self.update: BalancerUpdate | None = None

    def collect(self) -> list[BalancerUpdate]:
        return [self.update]


def snapshot(name: str, instances: int, at, minute: int) -> BalancerUpdate:
    """The balancer at one minute: sessions rising through the hour, 1% draining, one hot pool."""
    servers = []
    for n in range(instances):
        backend = f"push-{n % BACKENDS}"
        draining = n % 100 == 7
        sessions = 20 + (n * 7 + minute) % 15
        if draining:
            sessions = max(0, 40 - minute // 2)
        if backend == "push-3" and n % 50 == 3:
            sessions *= 5
        servers.append(
            BalancerServer(
                backend=backend,
                server=f"s{n}",
                address=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
                port=9000,
                state="drain" if draining else "up",
                status="DRAIN" if draining else "UP",
                check_status="L7OK",
                weight=1,
                sessions=sessions,
                last_change_s=HISTORY_MIN * 60 - 600 if draining else 86400,
            )
        )
    total = sum(s.sessions for s in servers)
    proxies = (BalancerProxy(name="fe", kind="frontend", status="OPEN", sessions=total),)
    return BalancerUpdate(name, "haproxy", at, tuple(servers), proxies)


def timed(session: requests.Session, url: str, count: int, headers: dict) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = session.get(url, headers=headers, timeout=30)
        response.raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return times


def bench_latency(instances: int, count: int, workdir: Path) -> dict:
    url = f"sqlite:///{workdir / 'push.db'}"
    migrate.upgrade(url)
    config = Config(store=StoreConfig(url=url),
                    haproxy=(HAProxyConfig(name="edge", stats_url="http://127.0.0.1:1/;csv"),))  # fmt: skip
    qd = Quarterdeck.from_config(config)
    source = SeededBalancer("edge")
    now = qd.clock()
    seed_start = time.perf_counter()
    for minute in range(HISTORY_MIN, -1, -1):
        source.update = snapshot(
            "edge", instances, now - timedelta(minutes=minute), HISTORY_MIN - minute
        )
        if minute == 0:
            source.update = replace(source.update, observed_at=qd.clock())
        result = run_pass(qd, source)
        assert result.ok, result.error
    seeded_s = time.perf_counter() - seed_start
    with qd.store.session() as db:
        token = create_token(db, "bench", "viewer")
    gc.freeze()  # as `quarterdeck serve` does once it has started
    server = Server(create_app(qd=qd), "127.0.0.1", 0, threads=4)
    server.start()
    results: dict = {"instances": instances, "requests": count, "seeded_s": round(seeded_s, 1)}
    try:
        session = requests.Session()
        auth = {"Authorization": f"Bearer {token}"}
        body = session.get(f"{server.url}/api/v1/push/connections", headers=auth).json()
        counted = sum(len(s["instances"]) for s in body["by_service"])
        assert counted == instances, counted
        assert body["stale"] is False
        results["total"] = body["total"]
        results["drains"] = len(body["drains"])
        results["imbalanced"] = len(body["imbalance"])
        page = session.get(f"{server.url}/push", headers=auth).text
        assert 'data-chart-source="rollups"' in page
        assert page.count("data-instance=") == min(instances, 100), "one page of instance rows"
        for name, path, extra in (
            ("api", "/api/v1/push/connections", {}),
            ("page", "/push", {}),
            ("live_part", "/push", {"HX-Request": "true"}),
            ("page_900", "/push?offset=900", {}),
        ):
            timed(session, f"{server.url}{path}", 3, auth | extra)  # warm up
            times = timed(session, f"{server.url}{path}", count, auth | extra)
            p95 = percentile(times, 0.95)
            results[name] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(p95, 1),
                "ratio_to_goal": round(p95 / GOAL_MS, 2),
            }
    finally:
        server.stop()
        qd.feed.close()
        qd.store.dispose()
    return results


class HoldingServer:
    """A WebSocket server on loopback that keeps connections open and answers /health."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = free_ports(1)[0]

        async def handle(connection) -> None:
            async for message in connection:
                await connection.send(message)

        def health(connection, request):
            if request.path.startswith("/health"):
                return connection.respond(200, "OK\n")
            return None

        async def begin():
            return await serve(handle, LOOPBACK, self.port, process_request=health,
                               ping_interval=None)  # fmt: skip

        self.server = asyncio.run_coroutine_threadsafe(begin(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def end() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(end(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def start_haproxy(backend_address: str, workdir: Path) -> tuple[ServerProcess, str, str, str]:
    frontend_port, stats_port, runtime_port = free_ports(3)
    config = workdir / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            loopback=LOOPBACK,
            runtime_port=runtime_port,
            unix_socket="",
            frontend_port=frontend_port,
            stats_port=stats_port,
            backend="push",
            routes="",
            backends=backend_block("push", [backend_address], "/health"),
        )
    )
    process = ServerProcess("haproxy", [require_binary("haproxy", "haproxy"), "-f", config, "-db"],
                            log_path=workdir / "haproxy.log", cwd=workdir)  # fmt: skip
    stats = f"http://{LOOPBACK}:{stats_port}/stats;csv"
    process.wait_ready(lambda: http_get(stats)[0] == 200)
    return process, f"ws://{LOOPBACK}:{frontend_port}/", stats, f"tcp://{LOOPBACK}:{runtime_port}"


def bench_change_delay(rounds: int, workdir: Path, interval_s: int) -> dict:
    holder = HoldingServer()
    haproxy, ws_url, stats_url, runtime = start_haproxy(f"{LOOPBACK}:{holder.port}", workdir)
    url = f"sqlite:///{workdir / 'change.db'}"
    migrate.upgrade(url)
    config = Config(store=StoreConfig(url=url), collect=CollectConfig(interval_s=interval_s),
                    haproxy=(HAProxyConfig(name="edge", stats_url=stats_url, runtime=runtime),))  # fmt: skip
    qd = Quarterdeck.from_config(config)
    with qd.store.session() as db:
        token = create_token(db, "bench", "viewer")
    server = Server(create_app(qd=qd), "127.0.0.1", 0, threads=4)
    server.start()
    collection = CollectionService(qd)
    collection.start()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}

    def total() -> int | None:
        return session.get(f"{server.url}/api/v1/push/connections", headers=auth).json()["total"]

    delays = []
    clients = []
    held = contextlib.ExitStack()
    try:
        deadline = time.monotonic() + 60
        while total() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # the server's check has passed: it takes connections
        for r in range(rounds):
            time.sleep(random.uniform(0, interval_s))
            opening = r % 2 == 0
            start = time.monotonic()
            if opening:
                for n in range(5):
                    client = held.enter_context(connect(ws_url, open_timeout=10,
                                                        ping_interval=None))  # fmt: skip
                    client.send(f"hello {n}")
                    client.recv(timeout=10)
                    clients.append(client)
            else:
                while clients:
                    clients.pop().close()
            want = 5 if opening else 0
            while total() != want:
                if time.monotonic() - start > 3 * interval_s:
                    raise RuntimeError(f"round {r}: the API never showed {want} connections")
                time.sleep(0.1)
            delays.append(time.monotonic() - start)
    finally:
        held.close()
        collection.stop()
        server.stop()
        qd.feed.close()
        qd.store.dispose()
        haproxy.stop()
        holder.close()
    worst = max(delays)
    return {
        "interval_s": interval_s,
        "rounds": rounds,
        "delays_s": [round(d, 2) for d in delays],
        "worst_s": round(worst, 2),
        "ratio_to_goal": round(worst / interval_s, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--interval", type=int, default=10, help="[collect] interval_s")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qd-push-bench-"))
    try:
        results = {
            "latency": bench_latency(args.instances, args.requests, workdir),
            "change": bench_change_delay(args.rounds, workdir, args.interval),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    latency, change = results["latency"], results["change"]
    print(f"\npush connections at {latency['instances']} instances "
          f"({latency['requests']} requests each; store seeded in {latency['seeded_s']} s)")  # fmt: skip
    print(f"  total {latency['total']}, {latency['drains']} draining, "
          f"{latency['imbalanced']} imbalanced")  # fmt: skip
    for name in ("api", "page", "live_part", "page_900"):
        figures = latency[name]
        print(f"  {name:<10} p50 {figures['p50_ms']:>7} ms   p95 {figures['p95_ms']:>7} ms   "
              f"p95 / {GOAL_MS:.0f} ms goal = {figures['ratio_to_goal']}")  # fmt: skip
    print(f"\na connection change through HAProxy, collected every {change['interval_s']} s")
    print(f"  delays {change['delays_s']} s; worst {change['worst_s']} s = "
          f"{change['ratio_to_goal']} of one poll interval (goal <= 1)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
