"""The dependency map at fleet scale: `/api/v1/map` at 2,000 nodes and 8,000 edges.

Run: .venv/bin/python bench/map_api.py [--services 2000] [--edges 8000] [--minutes 15]
     [--requests 50] [--store URL] [--json]

1. A fresh store (SQLite by default) gets a Consul catalog of `--services` services through
   the catalog store writer (each with one instance; 2% critical, 3% warning; the first 200 in
   the Connect mesh, declaring their upstreams, some of them never called) and `--edges` call
   edges sent as real spans through the span store: one call per edge per minute for
   `--minutes` minutes (a client span and the callee's server span, 2% errors), then rolled
   up by the span RED job, which is timed too.
2. The real server (`app.serving.Server`, 4 workers, heap frozen as `serve` does) answers
   `--requests` requests each, one after another, with a viewer token: the whole fleet
   (grouped past the 300-node limit), a focused map (one service, 1 hop and 2 hops), only the
   unhealthy, and the whole fleet compared with an hour before. Goal: p95 ≤ 300 ms. The same
   requests through Flask's test client give each one's CPU time (`time.thread_time`), which
   a loaded machine inflates far less than wall time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.auth.accounts import create_token  # noqa: E402
from app.config import Config, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.serving import Server  # noqa: E402
from app.store import migrate  # noqa: E402
from app.store.catalog import apply_catalog_update  # noqa: E402
from app.store.span_red import LAG_NS, roll_up_spans  # noqa: E402
from app.store.traces import write_spans  # noqa: E402
from collectors.base import (  # noqa: E402
    CatalogUpdate,
    CheckRecord,
    InstanceRecord,
    ServiceRecord,
)
from collectors.spans import SpanRecord  # noqa: E402

GOAL_MS = 300.0
TEAMS = 40  # name prefixes: the grouping key
MESH = 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def service_names(count: int) -> list[str]:
    """Names whose prefix is a team owning a run of neighbours (calls mostly stay near)."""
    per_team = max(count // TEAMS, 1)
    return [f"team{i // per_team:02d}-svc{i:04d}" for i in range(count)]


def fleet_edges(names: list[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Layered calls: each edge goes from a service to one later in the list."""
    edges: set[tuple[str, str]] = set()
    while len(edges) < count:
        a = rng.randrange(len(names) - 1)
        b = rng.randrange(a + 1, min(len(names), a + 200))
        edges.add((names[a], names[b]))
    return sorted(edges)


def seed_catalog(qd: Quarterdeck, names: list[str], edges: list[tuple[str, str]], rng) -> None:
    mesh = set(names[:MESH])
    upstreams: dict[str, set[str]] = {}
    for a, b in edges:
        if a in mesh and rng.random() < 0.9:  # a tenth of their calls undeclared: observed_only
            upstreams.setdefault(a, set()).add(b)
    for i in range(MESH):  # a few declared upstreams nothing calls: declared_only drift
        upstreams.setdefault(names[i], set()).add(names[-1 - i])
    services = []
    for i, name in enumerate(names):
        health = "critical" if i % 50 == 7 else "warning" if i % 33 == 5 else "passing"
        check = CheckRecord(check_id=f"{name}:http", name="http", status=health)
        instance = InstanceRecord(
            id=f"{name}-1",
            node=f"node-{i % 100}",
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            port=8080,
            checks=(check,),
        )
        services.append(
            ServiceRecord(
                name=name,
                tags=(f"team={name.split('-', 1)[0]}",),
                instances=(instance,),
                upstreams=tuple(sorted(upstreams.get(name, ()))),
            )
        )
    with qd.store.session(write=True) as db:
        apply_catalog_update(db, "consul", CatalogUpdate(qd.clock(), services))


def seed_spans(qd: Quarterdeck, edges: list[tuple[str, str]], minutes: int, rng) -> int:
    """One call per edge per minute, in batches as an OTLP export would arrive."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    written = 0
    span_id = 1
    for minute in range(minutes, 0, -1):
        start_ns = int((now - timedelta(minutes=minute)).timestamp()) * 1_000_000_000
        batch: list[SpanRecord] = []
        for n, (a, b) in enumerate(edges):
            trace = f"{minute:08x}{n:024x}"
            offset = rng.randrange(59_000) * 1_000_000
            client = SpanRecord(trace, f"{span_id:016x}", "", a, "GET /x", start_ns + offset,
                                int(rng.lognormvariate(3, 0.8) * 1e6), kind=3)  # fmt: skip
            server = SpanRecord(trace, f"{span_id + 1:016x}", client.span_id, b, "GET /x",
                                start_ns + offset + 100_000, client.duration_ns - 200_000,
                                kind=2, status_code=2 if rng.random() < 0.02 else 0)  # fmt: skip
            span_id += 2
            batch += [client, server]
            if len(batch) >= 1024:
                with qd.store.engine.begin() as connection:
                    written += write_spans(connection, batch).stored
                batch = []
        if batch:
            with qd.store.engine.begin() as connection:
                written += write_spans(connection, batch).stored
    return written


def roll_up_all(qd: Quarterdeck) -> tuple[int, float]:
    start = time.perf_counter()
    spans = 0
    upto = time.time_ns() + LAG_NS
    while True:
        with qd.store.session(write=True) as db:
            run = roll_up_spans(db, qd.clock(), now_ns=upto)
        spans += run.spans
        if run.spans == 0:
            return spans, time.perf_counter() - start


def timed(session: requests.Session, url: str, count: int, headers: dict) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = session.get(url, headers=headers, timeout=60)
        response.raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return times


def cpu_times(client, path: str, count: int, headers: dict) -> list[float]:
    """CPU time (ms) of the request in this thread: what a request costs, whatever the load."""
    times = []
    for _ in range(count):
        start = time.thread_time()
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.status_code
        times.append((time.thread_time() - start) * 1000)
    return times


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="qd-map-bench-"))
    url = args.store or f"sqlite:///{workdir / 'map.db'}"
    migrate.upgrade(url)
    qd = Quarterdeck.from_config(Config(store=StoreConfig(url=url)))
    rng = random.Random(8)
    names = service_names(args.services)
    edges = fleet_edges(names, args.edges, rng)
    results: dict = {"services": args.services, "edges": args.edges, "minutes": args.minutes,
                     "store": url.split(":")[0], "requests": args.requests}  # fmt: skip
    try:
        start = time.perf_counter()
        seed_catalog(qd, names, edges, rng)
        results["catalog_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        results["spans"] = seed_spans(qd, edges, args.minutes, rng)
        results["spans_s"] = round(time.perf_counter() - start, 1)
        rolled, rollup_s = roll_up_all(qd)
        results["rollup"] = {"spans": rolled, "seconds": round(rollup_s, 1),
                             "spans_per_s": round(rolled / rollup_s)}  # fmt: skip
        with qd.store.session() as db:
            token = create_token(db, "bench", "viewer")
        gc.freeze()
        app = create_app(qd=qd)
        client = app.test_client()
        server = Server(app, "127.0.0.1", 0, threads=4)
        server.start()
        try:
            session = requests.Session()
            auth = {"Authorization": f"Bearer {token}"}
            whole = session.get(f"{server.url}/api/v1/map", headers=auth).json()
            assert whole["totals"]["nodes"] >= args.services, whole["totals"]
            assert whole["totals"]["edges"] >= args.edges, whole["totals"]
            assert whole["truncated"] == (args.services > 300) and len(whole["nodes"]) <= 300
            results["whole_fleet"] = {
                "nodes_shown": len(whole["nodes"]),
                "edges_shown": len(whole["edges"]),
                "groups": len(whole["groups"]),
                "bytes": len(json.dumps(whole)),
            }
            hub = names[len(names) // 2]
            for name, path in (
                ("whole", "/api/v1/map"),
                ("focus_1_hop", f"/api/v1/map?service={hub}"),
                ("focus_2_hops", f"/api/v1/map?service={hub}&hops=2"),
                ("unhealthy", "/api/v1/map?unhealthy=true"),
                ("whole_compare_1h", "/api/v1/map?compare=1h"),
            ):
                timed(session, f"{server.url}{path}", 2, auth)
                times = timed(session, f"{server.url}{path}", args.requests, auth)
                p95 = percentile(times, 0.95)
                cpu = cpu_times(client, path, max(args.requests // 2, 5), auth)
                results[name] = {
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(p95, 1),
                    "ratio_to_goal": round(p95 / GOAL_MS, 2),
                    "cpu_p50_ms": round(statistics.median(cpu), 1),
                    "cpu_p95_ms": round(percentile(cpu, 0.95), 1),
                }
        finally:
            server.stop()
    finally:
        qd.feed.close()
        qd.store.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--edges", type=int, default=8000)
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--store", default="", help="a store URL (default: a fresh SQLite file)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['services']} services, {results['edges']} edges, {results['minutes']} min "
          f"of spans ({results['spans']} spans) on {results['store']}")  # fmt: skip
    print(f"seed: catalog {results['catalog_s']} s, spans {results['spans_s']} s; "
          f"span RED job {results['rollup']['seconds']} s "
          f"({results['rollup']['spans_per_s']} spans/s)")  # fmt: skip
    print(f"whole fleet shows {results['whole_fleet']}")
    for name in ("whole", "focus_1_hop", "focus_2_hops", "unhealthy", "whole_compare_1h"):
        r = results[name]
        print(f"{name:18} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  "
              f"(goal {GOAL_MS:.0f} ms: {r['ratio_to_goal']}); CPU p50 {r['cpu_p50_ms']:.0f} ms "
              f"p95 {r['cpu_p95_ms']:.0f} ms")  # fmt: skip
    print(f"load average {results['load_average']}")


if __name__ == "__main__":
    main()
