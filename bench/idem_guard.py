"""The idempotency guard's happy path against a bare lock pair and python-redis-lock.

Starts a private redis-server (no persistence) on a free loopback port and times, per call:

1. bare: `SET key token NX PX ttl` + the Lua compare-and-delete (EVALSHA) — the floor;
2. guard: `IdempotencyGuard.run(key, fn)` with the watchdog on (the default), fresh key each call;
3. guard, watchdog off;
4. python-redis-lock: `Lock(..., expire=30, auto_renewal=True)` acquire + release.

Phases run interleaved in rounds, so a load change on a shared machine hits all of them alike.
Round trips per call are counted on the client: every command sent on the connection is one
round trip (nothing here is pipelined). `INFO commandstats` would count the commands a Lua
script runs inside Redis too, which are not round trips.
Goals: guard/bare latency ratio <= 1.5 (p50), guard round trips per call <= 3.

Run: .venv/bin/python bench/idem_guard.py [--calls 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis_lock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.idempotency import IdempotencyGuard  # noqa: E402
from fleet.idempotency.core import RELEASE_LUA  # noqa: E402

GOAL_RATIO = 1.5
GOAL_ROUND_TRIPS = 3


def start_redis(workdir: str) -> tuple[subprocess.Popen, int]:
    """Start a redis-server of the bench's own; return it and its port."""
    binary = shutil.which("redis-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if binary is None:
        sys.exit("redis-server is not installed (Debian package redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    sys.exit("redis-server did not answer")


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: one send is one round trip (no pipelines here)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent += 1
        return super().send_packed_command(command, check_health)


def measure(calls: int, rounds: int, phases: dict) -> dict:
    """Time every phase in interleaved rounds (load drifts); return p50/p95 µs and round trips."""
    samples = {name: [] for name in phases}
    sent = dict.fromkeys(phases, 0)
    cpu = dict.fromkeys(phases, 0)
    for one_call in phases.values():
        for i in range(200):
            one_call(f"warm-{i}")
    for round_no in range(rounds):
        for name, one_call in phases.items():
            before = CountingConnection.sent
            cpu_before = time.thread_time_ns()
            for i in range(calls // rounds):
                started = time.perf_counter_ns()
                one_call(f"k-{round_no}-{i}")
                samples[name].append((time.perf_counter_ns() - started) / 1000)
            sent[name] += CountingConnection.sent - before
            cpu[name] += time.thread_time_ns() - cpu_before
    results = {}
    for name, values in samples.items():
        values.sort()
        results[name] = {
            "p50_us": round(statistics.median(values), 1),
            "p95_us": round(values[int(len(values) * 0.95)], 1),
            "round_trips": round(sent[name] / len(values), 2),
            # Client CPU per call (this thread only): what load on the machine does not change.
            "client_cpu_us": round(cpu[name] / len(values) / 1000, 1),
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="per phase")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds of phases")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="idem-bench-")
    process, port = start_redis(workdir)
    try:
        pool = redis.ConnectionPool(port=port, connection_class=CountingConnection)
        client = redis.Redis(connection_pool=pool)
        release = client.register_script(RELEASE_LUA)

        def bare(key):
            token = secrets.token_hex(16)
            assert client.set(f"bare:{key}", token, nx=True, px=30000)
            assert release(keys=[f"bare:{key}"], args=[token]) == 1

        guard = IdempotencyGuard(client, "bench", stream="bench:events")
        guard_off = IdempotencyGuard(client, "bench-off", stream="bench:events", watchdog=False)

        def guarded(key):
            guard.run(key, dict, fingerprint="fp")

        def guarded_off(key):
            guard_off.run(key, dict, fingerprint="fp")

        def python_redis_lock(key):
            lock = redis_lock.Lock(client, f"prl:{key}", expire=30, auto_renewal=True)
            assert lock.acquire(blocking=False)
            lock.release()

        results = measure(
            args.calls,
            args.rounds,
            {
                "bare": bare,
                "guard": guarded,
                "guard_no_watchdog": guarded_off,
                "python_redis_lock": python_redis_lock,
            },
        )
        guard.close()
        results["ratio_guard_to_bare_p50"] = round(
            results["guard"]["p50_us"] / results["bare"]["p50_us"], 2
        )
        results["ratio_prl_to_bare_p50"] = round(
            results["python_redis_lock"]["p50_us"] / results["bare"]["p50_us"], 2
        )
        results["load"] = os.getloadavg()
        results["calls"] = args.calls
        results["redis"] = client.info("server")["redis_version"]
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name in ("bare", "guard", "guard_no_watchdog", "python_redis_lock"):
            r = results[name]
            print(
                f"{name:20s} p50 {r['p50_us']:8.1f} µs  p95 {r['p95_us']:8.1f} µs  "
                f"round trips/call {r['round_trips']:.2f}  client CPU {r['client_cpu_us']:.1f} µs"
            )
        print(
            f"guard/bare p50 ratio {results['ratio_guard_to_bare_p50']} (goal <= {GOAL_RATIO}); "
            f"python-redis-lock/bare {results['ratio_prl_to_bare_p50']}; "
            f"load {results['load']}"
        )
    ok = (
        results["ratio_guard_to_bare_p50"] <= GOAL_RATIO
        and results["guard"]["round_trips"] <= GOAL_ROUND_TRIPS
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
