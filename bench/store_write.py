"""Store write throughput: catalog upserts and sample inserts vs a bare executemany.

The bare baseline hands the same Python rows to the driver with the least work possible:
JSON columns serialised with json.dumps, timestamps as the driver takes them.

Run: .venv/bin/python bench/store_write.py [--postgres URL] [--instances N] [--samples N]
Without --postgres it starts a throw-away PostgreSQL cluster like the tests do, when it can.
Prints rows/s for each and the ratio of Quarterdeck's rate to the bare DBAPI rate (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.store import Store, migrate  # noqa: E402
from app.store.catalog import apply_catalog_update  # noqa: E402
from app.store.samples import SampleRow, insert_samples  # noqa: E402
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord  # noqa: E402

T0 = datetime(2026, 11, 27, tzinfo=UTC)
PER_SERVICE = 5


def catalog(n_instances: int, status: str, at: datetime) -> CatalogUpdate:
    """A fleet of n instances, five per service, each with one check."""
    services = []
    for s in range(n_instances // PER_SERVICE):
        instances = tuple(
            InstanceRecord(
                id=f"svc-{s}-{i}",
                node=f"node-{i}",
                address=f"10.{s // 250}.{s % 250}.{i}",
                port=8000 + i,
                tags=("v1",),
                meta={"version": "v1"},
                version="v1",
                checks=(CheckRecord("http", "http", status, output=f"HTTP {status}"),),
            )
            for i in range(PER_SERVICE)
        )
        services.append(ServiceRecord(name=f"svc-{s}", tags=("web",), instances=instances))
    return CatalogUpdate(observed_at=at, services=services, complete=True)


def time_catalog(store: Store, n: int) -> tuple[float, float]:
    """Time the first pass (all inserts) and a second pass (every instance changes state)."""
    first = catalog(n, "passing", T0)
    start = time.perf_counter()
    with store.session() as db:
        apply_catalog_update(db, "bench", first)
    insert_s = time.perf_counter() - start
    second = catalog(n, "critical", T0 + timedelta(seconds=10))
    start = time.perf_counter()
    with store.session() as db:
        apply_catalog_update(db, "bench", second)
    update_s = time.perf_counter() - start
    return insert_s, update_s


def bare_catalog(store: Store, n: int) -> float:
    """The same rows (services, instances, checks) through the driver's executemany."""
    now = T0
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        p = "?" if store.dialect == "sqlite" else "%s"
        now_v = now.replace(tzinfo=None) if store.dialect == "sqlite" else now
        n_services = n // PER_SERVICE
        start = time.perf_counter()
        if store.dialect == "sqlite":
            cur.execute("BEGIN")
        cur.executemany(
            "INSERT INTO services (id, name, source, kind, tags, meta, versions, health, health_rank,"
            " n_total, n_passing, n_warning, n_critical, n_maintenance, first_seen_at, observed_at,"
            f" changed_at) VALUES ({', '.join([p] * 17)})",
            [
                (
                    s + 1_000_000,
                    f"bare-{s}",
                    "bare",
                    "",
                    json.dumps(["web"]),
                    json.dumps({}),
                    json.dumps(["v1"]),
                    "passing",
                    0,
                    5,
                    5,
                    0,
                    0,
                    0,
                    now_v,
                    now_v,
                    now_v,
                )
                for s in range(n_services)
            ],
        )
        cur.executemany(
            "INSERT INTO instances (id, service_id, source, source_id, node, address, port, tags,"
            " meta, version, health, maintenance, maintenance_reason, observed_at)"
            f" VALUES ({', '.join([p] * 14)})",
            [
                (
                    s * PER_SERVICE + i + 1_000_000,
                    s + 1_000_000,
                    "bare",
                    f"bare-{s}-{i}",
                    f"node-{i}",
                    f"10.0.0.{i}",
                    8000 + i,
                    json.dumps(["v1"]),
                    json.dumps({"version": "v1"}),
                    "v1",
                    "passing",
                    False,
                    "",
                    now_v,
                )
                for s in range(n_services)
                for i in range(PER_SERVICE)
            ],
        )
        cur.executemany(
            "INSERT INTO checks (instance_id, check_id, name, kind, status, output, notes,"
            f" observed_at) VALUES ({', '.join([p] * 8)})",
            [
                (
                    s * PER_SERVICE + i + 1_000_000,
                    "http",
                    "http",
                    "service",
                    "passing",
                    "HTTP passing",
                    "",
                    now_v,
                )
                for s in range(n_services)
                for i in range(PER_SERVICE)
            ],
        )
        raw.commit()
        return time.perf_counter() - start
    finally:
        raw.close()


def bare_change(store: Store, n: int) -> float:
    """The change pass's writes on the bare rows: every instance and check, a transition each."""
    at = T0 + timedelta(seconds=10)
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        sqlite = store.dialect == "sqlite"
        p = "?" if sqlite else "%s"
        at_v = at.replace(tzinfo=None) if sqlite else at
        cur.execute("SELECT id, instance_id FROM checks WHERE instance_id >= 1000000")
        check_ids = cur.fetchall()
        raw.commit()
        n_services = n // PER_SERVICE
        start = time.perf_counter()
        if sqlite:
            cur.execute("BEGIN")
        cur.executemany(
            f"UPDATE instances SET health = {p}, observed_at = {p} WHERE id = {p}",
            [("critical", at_v, 1_000_000 + k) for k in range(n_services * PER_SERVICE)],
        )
        cur.executemany(
            f"UPDATE checks SET status = {p}, output = {p}, observed_at = {p} WHERE id = {p}",
            [("critical", "HTTP critical", at_v, check_id) for check_id, _ in check_ids],
        )
        cur.executemany(
            "INSERT INTO health_transitions (service_id, instance_id, at, from_state, to_state,"
            f" check_id, output) VALUES ({', '.join([p] * 7)})",
            [
                (
                    1_000_000 + (inst - 1_000_000) // PER_SERVICE,
                    inst,
                    at_v,
                    "passing",
                    "critical",
                    "http",
                    "HTTP critical",
                )
                for _, inst in check_ids
            ],
        )
        cur.executemany(
            f"UPDATE services SET health = {p}, health_rank = {p}, n_passing = {p},"
            f" n_critical = {p}, changed_at = {p}, observed_at = {p} WHERE id = {p}",
            [("critical", 4, 0, 5, at_v, at_v, 1_000_000 + s) for s in range(n_services)],
        )
        raw.commit()
        return time.perf_counter() - start
    finally:
        raw.close()


def samples(n: int) -> list[SampleRow]:
    """n samples spread over 200 instances."""
    return [
        SampleRow(
            "bench",
            "push_connections",
            f"svc-{k % 40}",
            f"i-{k % 200}",
            float(k),
            T0 + timedelta(seconds=k),
        )
        for k in range(n)
    ]


def time_samples(store: Store, rows: list[SampleRow]) -> float:
    start = time.perf_counter()
    with store.session() as db:
        insert_samples(db, rows)
    return time.perf_counter() - start


def bare_samples(store: Store, rows: list[SampleRow]) -> float:
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        sqlite = store.dialect == "sqlite"
        p = "?" if sqlite else "%s"
        start = time.perf_counter()
        values = [
            (
                r.source,
                r.metric,
                r.service,
                r.instance,
                r.value,
                r.at.replace(tzinfo=None) if sqlite else r.at,
            )
            for r in rows
        ]

        if sqlite:
            cur.execute("BEGIN")
        cur.executemany(
            f"INSERT INTO samples (source, metric, service, instance, value, at) VALUES ({', '.join([p] * 6)})",
            values,
        )
        raw.commit()
        return time.perf_counter() - start
    finally:
        raw.close()


def measure_once(url: str, n_instances: int, n_samples: int) -> dict[str, float]:
    """One round on a fresh, migrated database: seconds for each part."""
    migrate.upgrade(url)
    store = Store(url)
    try:
        insert_s, update_s = time_catalog(store, n_instances)
        bare_c = bare_catalog(store, n_instances)
        bare_u = bare_change(store, n_instances)
        rows = samples(n_samples)
        ours_s = time_samples(store, rows)
        bare_s = bare_samples(store, rows)
    finally:
        store.dispose()
    return {
        "insert": insert_s,
        "update": update_s,
        "bare_c": bare_c,
        "bare_u": bare_u,
        "ours_s": ours_s,
        "bare_s": bare_s,
    }


def run(fresh_url, label: str, n_instances: int, n_samples: int, repeat: int) -> dict:
    """Best of `repeat` rounds for each figure (the machine's other load only ever slows)."""
    rounds = [measure_once(fresh_url(), n_instances, n_samples) for _ in range(repeat)]
    best = {k: min(r[k] for r in rounds) for k in rounds[0]}
    insert_s, update_s, bare_c = best["insert"], best["update"], best["bare_c"]
    bare_u = best["bare_u"]
    ours_s, bare_s = best["ours_s"], best["bare_s"]
    result = {
        "store": label,
        "repeat": repeat,
        "instances": n_instances,
        "catalog_insert_rows_s": round(n_instances / insert_s),
        "catalog_update_rows_s": round(n_instances / update_s),
        "catalog_bare_rows_s": round(n_instances / bare_c),
        "catalog_insert_ratio": round(bare_c / insert_s, 2),
        "catalog_change_bare_rows_s": round(n_instances / bare_u),
        "catalog_update_ratio": round(bare_u / update_s, 2),
        "samples": n_samples,
        "samples_rows_s": round(n_samples / ours_s),
        "samples_bare_rows_s": round(n_samples / bare_s),
        "samples_ratio": round(bare_s / ours_s, 2),
    }
    print(
        f"{label:<10} catalog, first pass (insert): {result['catalog_insert_rows_s']:>7} inst/s, "
        f"ratio {result['catalog_insert_ratio']} to bare executemany "
        f"({result['catalog_bare_rows_s']} inst/s; goal >= 0.5)"
    )
    print(
        f"{label:<10} catalog, every instance changes state: {result['catalog_update_rows_s']:>7} "
        f"inst/s, ratio {result['catalog_update_ratio']} to bare executemany of the same writes "
        f"({result['catalog_change_bare_rows_s']} inst/s; goal >= 0.5)"
    )
    print(
        f"{label:<10} samples: {result['samples_rows_s']:>7} rows/s, ratio "
        f"{result['samples_ratio']} to bare executemany ({result['samples_bare_rows_s']} rows/s; "
        "goal >= 0.5)"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="URL of a PostgreSQL server's admin database")
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    # As `quarterdeck serve` does once it has started: long-lived objects leave the GC's scans.
    gc.freeze()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))
        sqlite_url = lambda: f"sqlite:///{tmp}/bench-{next(counter)}.db"  # noqa: E731
        results.append(run(sqlite_url, "sqlite", args.instances, args.samples, args.repeat))
        from tests.fixtures.postgres import PostgresServer, running_postgres

        if args.postgres:
            from sqlalchemy.engine import make_url

            server = PostgresServer(make_url(args.postgres))
            pg = run(
                server.create_database, "postgresql", args.instances, args.samples, args.repeat
            )
            results.append(pg)
            server.drop_created_databases()
        else:
            workdir = Path(tmp) / "pg"
            workdir.mkdir()
            Path(tmp).chmod(0o755)  # the unprivileged PostgreSQL user must reach its folder
            with running_postgres(workdir) as base:
                server = PostgresServer(base)
                pg = run(
                    server.create_database, "postgresql", args.instances, args.samples, args.repeat
                )
                results.append(pg)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
