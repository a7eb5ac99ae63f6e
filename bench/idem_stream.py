"""Stream to store: idempotency events/s through the collector, acknowledged after commit.

Fills a Redis Stream with N events (DESIGN §6 fields), then runs collection passes (the
runner's own `run_pass`: XREADGROUP, insert skipping stored ids, commit, then XACK) until the
stream is drained, on a fresh SQLite file (or --store URL). Prints events/s and checks that
rows == XLEN with nothing pending. Goal: >= 20,000 events/s on SQLite.

Run: .venv/bin/python bench/idem_stream.py [--redis URL] [--store URL] [--events N] [--batch N]
Without --redis it starts a throw-away redis-server on a free port.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from app.collection.runner import run_pass  # noqa: E402
from app.config import Config, RedisConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.models import IdemEventRow  # noqa: E402
from app.store import migrate  # noqa: E402
from collectors.redis_idem import RedisIdemCollector  # noqa: E402

KINDS = ("duplicate_inflight", "duplicate_completed", "payload_mismatch", "lock_expired")


def start_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    """Start a redis-server without persistence on a free port; return it and its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def fill(client: redis.Redis, stream: str, events: int) -> None:
    """XADD the events in pipelined chunks, as a busy fleet would."""
    now_ms = int(time.time() * 1000)
    for start in range(0, events, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(events, start + 5000)):
            pipe.xadd(stream, {
                "service": f"svc-{i % 20}", "instance": f"svc-{i % 20}-{i % 3}",
                "key": f"order-{i // 3}", "kind": KINDS[i % len(KINDS)], "ts_ms": str(now_ms),
                "trace_id": f"{i:032x}", "fingerprint": "sha256:" + "ab" * 8, "held_ms": "120",
                "ttl_ms": "30000",
            })  # fmt: skip
        pipe.execute()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="Redis URL (default: a throw-away redis-server)")
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000, help="entries per XREADGROUP")
    parser.add_argument("--per-pass", type=int, default=50_000, help="entries per pass at most")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="idem-bench-")
    process = None
    try:
        url = args.redis
        if url is None:
            process, url = start_redis(workdir)
        store_url = args.store or f"sqlite:///{os.path.join(workdir, 'bench.db')}"
        migrate.upgrade(store_url)
        stream = "bench:idem:events"
        client = redis.Redis.from_url(url)
        client.delete(stream)
        fill(client, stream, args.events)
        config = Config(store=StoreConfig(url=store_url), redis=RedisConfig(url=url, stream=stream))
        qd = Quarterdeck.from_config(config)
        settings = RedisConfig(url=url, stream=stream, batch=args.batch,
                               max_per_pass=args.per_pass, scan_max_keys=0)  # fmt: skip
        collector = RedisIdemCollector.from_config(settings, clock=qd.clock)

        start = time.perf_counter()
        cpu_start = time.process_time()
        passes = 0
        while True:
            result = run_pass(qd, collector)
            passes += 1
            if not result.ok:
                raise SystemExit(f"pass failed: {result.error}")
            if result.counts.get("events", 0) == 0:
                break
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start

        with qd.store.session() as db:
            rows = db.scalar(select(func.count()).select_from(IdemEventRow))
        pending = int(client.xpending(stream, "quarterdeck")["pending"])
        xlen = client.xlen(stream)
        rate = rows / elapsed if elapsed else 0.0
        print(f"store: {qd.store.dialect}  events: {rows} (XLEN {xlen}, pending {pending})  "
              f"passes: {passes}  batch: {args.batch}")  # fmt: skip
        print(f"stream to store: {elapsed:.2f} s, {rate:,.0f} events/s (goal >= 20,000 on SQLite)")
        # On a shared machine the wall clock waits for other work; this process's own CPU
        # time (Redis and SQLite's fsync excluded) shows what one quiet core would do.
        print(f"collector CPU: {cpu:.2f} s, {rows / cpu if cpu else 0:,.0f} events per CPU-second")
        print(
            f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
        )
        qd.store.dispose()
        return 0 if rows == xlen and pending == 0 else 1
    finally:
        if process is not None:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
