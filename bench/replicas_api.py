"""API latency at 2,000 services with one `quarterdeck serve` replica and with three.

Run: .venv/bin/python bench/replicas_api.py [--services 2000] [--requests 300]
     [--concurrency 8] [--replicas 3] [--postgres URL] [--json]

1. A fresh PostgreSQL database (a throwaway cluster unless `--postgres` names a server's admin
   database) gets a Consul catalog of `--services` services (two instances each, 2% critical,
   3% warning) through the catalog store writer, as the Consul collector writes it.
2. One replica, then `--replicas` replicas (the same configuration; one of them leads and runs
   the jobs), answer `--requests` requests per endpoint from `--concurrency` client threads
   that take the replicas in turn, as a round-robin load balancer would: `GET /api/v1/services`
   (the whole fleet), `GET /api/v1/services/<name>` (random services) and
   `GET /api/v1/sources`, with a viewer token.
3. p50 / p95 per endpoint for each case. Goal: with three replicas, p95 unchanged from one
   (within 10 %). On a machine with fewer cores than replicas they share the CPU, so what
   this shows there is the cost of running replicas (the followers' relay and election
   threads, the leader's jobs), not added capacity.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.store import Store  # noqa: E402
from app.store.catalog import apply_catalog_update  # noqa: E402
from bench.serve_replicas import Replicas, postgres_database  # noqa: E402
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord  # noqa: E402

GOAL_RATIO = 1.10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seed_catalog(url: str, count: int) -> list[str]:
    """Write `count` services of two instances each, as one Consul pass would."""
    from app.models import utcnow

    names = [f"team{i % 40:02d}-svc{i:04d}" for i in range(count)]
    services = []
    for i, name in enumerate(names):
        health = "critical" if i % 50 == 7 else "warning" if i % 33 == 5 else "passing"
        instances = tuple(
            InstanceRecord(
                id=f"{name}-{n}",
                node=f"node-{(i + n) % 100}",
                address=f"10.{n}.{i // 256 % 256}.{i % 256}",
                port=8080,
                checks=(CheckRecord(check_id=f"{name}-{n}:http", name="http", status=health),),
            )
            for n in (1, 2)
        )
        services.append(
            ServiceRecord(name=name, tags=(f"team={name.split('-', 1)[0]}",), instances=instances)
        )
    store = Store(url)
    try:
        with store.session(write=True) as db:
            apply_catalog_update(db, "consul", CatalogUpdate(utcnow(), services))
    finally:
        store.dispose()
    return names


def run_clients(
    bases: list[str], paths: list[str], headers: dict, threads: int
) -> tuple[list[float], int]:
    """Send every path once from `threads` clients, taking the replicas in turn."""
    turn = itertools.cycle(bases)
    lock = threading.Lock()
    durations: list[float] = []
    failures = [0]
    pending = list(paths)

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not pending:
                    return
                path, base = pending.pop(), next(turn)
            start = time.perf_counter()
            response = session.get(base + path, headers=headers, timeout=30)
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                durations.append(elapsed)
                failures[0] += response.status_code != 200

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return durations, failures[0]


def measure(bases: list[str], token: str, names: list[str], requests_n: int, threads: int):
    """Per endpoint, `requests_n` requests spread over `threads` clients and the replicas."""
    rng = random.Random(7)
    endpoints = {
        "/api/v1/services": lambda: "/api/v1/services",
        "/api/v1/services/<name>": lambda: f"/api/v1/services/{rng.choice(names)}",
        "/api/v1/sources": lambda: "/api/v1/sources",
    }
    headers = {"Authorization": f"Bearer {token}"}
    results = {}
    for label, path_of in endpoints.items():
        paths = [path_of() for _ in range(requests_n)]
        durations, failures = run_clients(bases, paths, headers, threads)
        results[label] = {
            "p50_ms": round(percentile(durations, 0.5), 1),
            "p95_ms": round(percentile(durations, 0.95), 1),
            "failures": failures,
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--postgres", help="URL of a PostgreSQL server's admin database")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.services} services, "
          f"{args.requests} requests per endpoint, {args.concurrency} clients")  # fmt: skip
    report = {}
    with postgres_database(args.postgres) as url:
        names = seed_catalog(url, args.services)
        replicas = Replicas(url, "")
        try:
            replicas.start("r1")
            replicas.wait_for_leader()
            cases = [(1, ["r1"]), (args.replicas, [f"r{i + 1}" for i in range(args.replicas)])]
            for count, wanted in cases:
                for name in wanted:
                    if all(r.name != name for r in replicas.running):
                        replicas.start(name)
                bases = [replicas.by_name(name).base for name in wanted]
                for base in bases:  # one warm-up each: first requests fill caches
                    requests.get(f"{base}/api/v1/services", timeout=30,
                                 headers={"Authorization": f"Bearer {replicas.token}"})  # fmt: skip
                report[count] = measure(bases, replicas.token, names, args.requests,
                                        args.concurrency)  # fmt: skip
                for label, figures in report[count].items():
                    print(f"{count} replica(s) {label:<26} p50 {figures['p50_ms']:>7.1f} ms  "
                          f"p95 {figures['p95_ms']:>7.1f} ms  failures {figures['failures']}")  # fmt: skip
        finally:
            replicas.stop_all()
    one, many = report[1], report[args.replicas]
    verdicts = {label: many[label]["p95_ms"] <= one[label]["p95_ms"] * GOAL_RATIO for label in one}
    for label, ok in verdicts.items():
        ratio = many[label]["p95_ms"] / max(one[label]["p95_ms"], 0.001)
        print(f"{label:<26} p95 with {args.replicas} / with 1 = {ratio:.2f}: "
              f"{'met' if ok else 'MISSED'} (goal <= {GOAL_RATIO:.2f})")  # fmt: skip
    if args.json:
        print(json.dumps({str(k): v for k, v in report.items()}, indent=2))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
