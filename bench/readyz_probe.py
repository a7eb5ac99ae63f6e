"""/readyz write probe: its latency, what it costs a collector that writes, and that nothing grows.

Run: .venv/bin/python bench/readyz_probe.py [--postgres URL] [--instances N] [--probes N] [--json]
Without --postgres it starts a throw-away PostgreSQL cluster like the tests do, when it can.

For each store: probe latency idle; probe latency and the share of "busy" answers while a
writer runs catalog passes back to back (every instance changing state each pass); the
writer's pass time with and without a probe every 100 ms (a busy load balancer); and the
store's size before and after the idle probes.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.store import Store, migrate  # noqa: E402
from app.store.catalog import apply_catalog_update  # noqa: E402
from bench.store_write import T0, catalog  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def probe_times(store: Store, count: int, pause_s: float = 0.0) -> tuple[list[float], list[str]]:
    times, states = [], []
    for _ in range(count):
        start = time.perf_counter()
        states.append(store.write_probe.check().state)
        times.append(time.perf_counter() - start)
        if pause_s:
            time.sleep(pause_s)
    return times, states


def writer_passes(store: Store, n: int, rounds: int, first_round: int) -> list[float]:
    """Catalog passes that flip every instance's state; return each pass's duration."""
    durations = []
    for r in range(first_round, first_round + rounds):
        update = catalog(n, "critical" if r % 2 else "passing", T0 + timedelta(minutes=r))
        start = time.perf_counter()
        with store.session(write=True) as db:
            apply_catalog_update(db, "bench", update)
        durations.append(time.perf_counter() - start)
    return durations


def size_of(store: Store, url: str) -> int:
    """The store's size on disk: SQLite after a checkpoint (so the WAL is in the file)."""
    with store.engine.connect() as connection:
        if store.dialect == "sqlite":
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return Path(url.removeprefix("sqlite:///")).stat().st_size
        return connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()


def bench(url: str, n: int, probes: int, rounds: int) -> dict:
    migrate.upgrade(url)
    store = Store(url)
    try:
        writer_passes(store, n, 1, 0)  # the fleet is stored
        size_before = size_of(store, url)
        idle, _ = probe_times(store, probes)
        size_after = size_of(store, url)

        alone = writer_passes(store, n, rounds, 1)

        stop = threading.Event()
        under_load: list[float] = []
        states: list[str] = []

        def poll():
            while not stop.is_set():
                t, s = probe_times(store, 1)
                under_load.extend(t)
                states.extend(s)
                time.sleep(0.1)

        poller = threading.Thread(target=poll)
        poller.start()
        probed = writer_passes(store, n, rounds, 1 + rounds)
        stop.set()
        poller.join()
    finally:
        store.dispose()
    return {
        "probe_idle_p50_ms": round(statistics.median(idle) * 1000, 2),
        "probe_idle_p95_ms": round(percentile(idle, 0.95) * 1000, 2),
        "probe_under_writer_p50_ms": round(statistics.median(under_load) * 1000, 1),
        "probe_under_writer_p95_ms": round(percentile(under_load, 0.95) * 1000, 1),
        "probes_under_writer": len(states),
        "busy_answers": states.count("busy"),
        "other_than_ok_or_busy": len([s for s in states if s not in ("ok", "busy")]),
        "writer_pass_alone_median_s": round(statistics.median(alone), 3),
        "writer_pass_probed_median_s": round(statistics.median(probed), 3),
        "size_before_idle_probes_bytes": size_before,
        "size_after_idle_probes_bytes": size_after,
    }


def show(name: str, result: dict) -> None:
    print(f"\n{name}")
    for key, value in result.items():
        print(f"  {key:<32} {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="URL of a PostgreSQL server's admin database")
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    gc.freeze()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        results["sqlite"] = bench(url, args.instances, args.probes, args.rounds)
        show("SQLite (WAL)", results["sqlite"])
    from sqlalchemy.engine import make_url

    from tests.fixtures.postgres import PostgresServer, running_postgres
    from tests.fixtures.processes import short_temp_dir, unprivileged_user

    if args.postgres:
        server = PostgresServer(make_url(args.postgres))
        results["postgresql"] = bench(
            server.create_database(), args.instances, args.probes, args.rounds
        )
        server.drop_created_databases()
    else:
        workdir = short_temp_dir("qd-bench-pg-", reachable_by=unprivileged_user())
        try:
            with running_postgres(workdir) as base:
                server = PostgresServer(base)
                results["postgresql"] = bench(
                    server.create_database(), args.instances, args.probes, args.rounds
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    show("PostgreSQL", results["postgresql"])
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
