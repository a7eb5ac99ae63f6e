"""The handoff report over 30 days of a 500-service fleet, on SQLite and PostgreSQL.

Seeds a store with 30 days of history — health transitions (instances flapping), probe
results and transitions, audit rows, idempotency events, balancer rollups and three days of
spans — then times `make_report` (every figure, the HTML, the CSV, the store write).
Goal (issue 12): at most 10 s on each store.

Run: .venv/bin/python bench/report_30d.py [--postgres URL] [--services 500] [--days 30]
     [--scale 1.0]   (--scale shrinks every row count, for a quick check that it runs)
Without --postgres it starts a throw-away PostgreSQL cluster like the tests do.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import Config, ReportConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.models import (  # noqa: E402
    AuditEntry,
    BalancerBackendRollup,
    HealthTransition,
    IdemEventRow,
    Instance,
    ProbeResultRow,
    ProbeTransition,
    Service,
    Span,
)
from app.reports.running import make_report  # noqa: E402
from app.store import migrate  # noqa: E402
from app.store.bulk import insert_rows  # noqa: E402

END = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
INSTANCES = 3
CHUNK = 20_000
KINDS = ("duplicate_inflight", "duplicate_completed", "payload_mismatch", "lock_expired")


def _insert(store, table, rows) -> None:
    for start in range(0, len(rows), CHUNK):
        with store.session(write=True) as db:
            insert_rows(db.connection(), table, rows[start : start + CHUNK])


def seed(store, services: int, days: int, scale: float) -> dict[str, int]:
    """Write the fleet's history; return how many rows of each kind."""
    rng = random.Random(12)
    start = END - timedelta(days=days)
    seconds = days * 86400
    counts: dict[str, int] = {}
    _insert(store, Service.__table__, [
        {"id": s + 1, "name": f"svc-{s:03d}", "source": "consul", "kind": "", "tags": [],
         "meta": {}, "versions": [], "health": "passing", "health_rank": 0,
         "n_total": INSTANCES, "n_passing": INSTANCES, "n_warning": 0, "n_critical": 0,
         "n_maintenance": 0, "first_seen_at": start - timedelta(days=1), "observed_at": END,
         "changed_at": END, "gone_at": None}
        for s in range(services)
    ])  # fmt: skip
    instances = [
        {"id": s * INSTANCES + i + 1, "service_id": s + 1, "source": "consul",
         "source_id": f"svc-{s:03d}-{i}", "node": f"n{i}", "address": "10.0.0.1",
         "port": 8000 + i, "tags": [], "meta": {}, "node_meta": {}, "version": "v1",
         "health": "passing", "maintenance": False, "maintenance_reason": "",
         "observed_at": END, "first_seen_at": start - timedelta(days=1), "gone_at": None}
        for s in range(services) for i in range(INSTANCES)
    ]  # fmt: skip
    _insert(store, Instance.__table__, instances)
    # Each instance goes critical about once a day for 1-20 minutes, and comes back.
    transitions = []
    for inst in instances:
        for _ in range(int(days * scale)):
            at = start + timedelta(seconds=rng.uniform(0, seconds - 1300))
            down = timedelta(seconds=rng.uniform(60, 1200))
            for when, old, new, out in ((at, "passing", "critical", "HTTP 503"),
                                        (at + down, "critical", "passing", "ok")):  # fmt: skip
                transitions.append({"service_id": inst["service_id"], "instance_id": inst["id"],
                                    "at": when, "from_state": old, "to_state": new,
                                    "check_id": f"service:{inst['source_id']}",
                                    "output": out})  # fmt: skip
    _insert(store, HealthTransition.__table__, transitions)
    counts["transitions"] = len(transitions)
    # 50 probes every 5 minutes; 1% failures.
    probes = max(1, int(50 * scale))
    results = [
        {"name": f"probe-{p}", "service": f"svc-{p:03d}", "at": start + timedelta(minutes=5 * n),
         "ok": rng.random() > 0.01, "status": 200, "latency_ms": 20.0, "detail": ""}
        for p in range(probes) for n in range(seconds // 300)
    ]  # fmt: skip
    _insert(store, ProbeResultRow.__table__, results)
    counts["probe_results"] = len(results)
    probe_transitions = []
    for p in range(probes):
        for _ in range(days):
            at = start + timedelta(seconds=rng.uniform(0, seconds - 700))
            for when, old, new in ((at, "passing", "failing"),
                                   (at + timedelta(minutes=10), "failing", "passing")):  # fmt: skip
                probe_transitions.append({"name": f"probe-{p}", "service": f"svc-{p:03d}",
                                          "at": when, "from_state": old, "to_state": new,
                                          "detail": "status 502, expected 200"})  # fmt: skip
    _insert(store, ProbeTransition.__table__, probe_transitions)
    audit = [
        {"id": f"{n:032x}", "at": start + timedelta(seconds=rng.uniform(0, seconds)),
         "finished_at": None, "actor": "alice", "action": "drain",
         "target": f"svc-{n % services:03d}/svc-{n % services:03d}-0", "reason": "flapping",
         "params": {}, "plan": [], "steps": [], "blast_radius": {},
         "status": rng.choice(("done", "done", "failed")), "undo_of": None,
         "idempotency_key": None}
        for n in range(int(2000 * scale))
    ]  # fmt: skip
    _insert(store, AuditEntry.__table__, audit)
    counts["audit"] = len(audit)
    start_ms = int(start.timestamp() * 1000)
    events = [
        {"stream": "s", "entry_id": f"{n}-0", "at_ms": start_ms + rng.randrange(seconds * 1000),
         "service": f"svc-{rng.randrange(services):03d}", "instance": "",
         "key": f"order-{rng.randrange(5000)}", "kind": rng.choice(KINDS), "trace_id": "",
         "fingerprint": "", "held_ms": None, "ttl_ms": None, "malformed": False, "problems": ""}
        for n in range(int(200_000 * scale))
    ]  # fmt: skip
    _insert(store, IdemEventRow.__table__, events)
    counts["idem_events"] = len(events)
    backends = max(1, int(10 * scale))
    rollups = [
        {"balancer": "edge", "backend": f"be-{b}", "minute_at": start + timedelta(minutes=m),
         "sessions_last": 100 + rng.randrange(400), "servers": 3}
        for b in range(backends) for m in range(seconds // 60)
    ]  # fmt: skip
    _insert(store, BalancerBackendRollup.__table__, rollups)
    counts["backend_rollups"] = len(rollups)
    span_start = END - timedelta(days=min(days, 3))
    spans = [
        {"trace_id": f"{n:032x}", "span_id": f"{n:016x}", "parent_span_id": "",
         "service": f"svc-{n % services:03d}", "instance": "", "name": f"op-{n % 7}",
         "kind": 2, "start_ns": int((span_start + timedelta(seconds=rng.uniform(0, 3 * 86400 - 1))).timestamp() * 1e9),
         "duration_ns": int(rng.lognormvariate(3, 1) * 1e6), "status_code": 0,
         "status_message": "", "attributes": {}, "truncated": False, "events": [],
         "events_count": 0, "links_count": 0, "received_ns": 0}
        for n in range(int(100_000 * scale))
    ]  # fmt: skip
    _insert(store, Span.__table__, spans)
    counts["spans"] = len(spans)
    return counts


def run(url: str, label: str, args) -> dict:
    migrate.upgrade(url)
    report = ReportConfig(name="handoff", period_h=24 * args.days)
    qd = Quarterdeck.from_config(Config(store=StoreConfig(url=url), reports=(report,)))
    qd.clock = lambda: END
    try:
        began = time.perf_counter()
        counts = seed(qd.store, args.services, args.days, args.scale)
        seeded_s = time.perf_counter() - began
        timings = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            report_id = make_report(qd, report, "cli")
            timings.append(time.perf_counter() - began)
        with qd.store.session() as db:
            from app.models import ReportRow

            row = db.get(ReportRow, report_id)
            summary = row.figures["summary"]
            html_kb = len(row.html) // 1024
    finally:
        qd.feed.close()
        qd.store.dispose()
    best = min(timings)
    result = {"store": label, "services": args.services, "days": args.days, "rows": counts,
              "seed_s": round(seeded_s, 1), "report_s": round(best, 2),
              "all_s": [round(t, 2) for t in timings], "goal_s": 10, "ok": best <= 10,
              "incidents": summary["incidents"], "html_kb": html_kb}  # fmt: skip
    print(f"{label:<10} report over {args.days} d x {args.services} services: {best:.2f} s "
          f"(goal <= 10 s: {'met' if best <= 10 else 'MISSED'}); {summary['incidents']} incidents, "
          f"HTML {html_kb} KiB; seeded {sum(counts.values())} rows in {seeded_s:.0f} s")  # fmt: skip
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="URL of a PostgreSQL server's admin database")
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row count")
    parser.add_argument("--repeat", type=int, default=3, help="reports made; the best is kept")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(f"sqlite:///{tmp}/report-bench.db", "sqlite", args))
        if not args.sqlite_only:
            from tests.fixtures.postgres import PostgresServer, running_postgres

            if args.postgres:
                from sqlalchemy.engine import make_url

                server = PostgresServer(make_url(args.postgres))
                results.append(run(server.create_database(), "postgresql", args))
                server.drop_created_databases()
            else:
                workdir = Path(tmp) / "pg"
                workdir.mkdir()
                Path(tmp).chmod(0o755)  # the unprivileged PostgreSQL user must reach its folder
                with running_postgres(workdir) as base:
                    results.append(run(PostgresServer(base).create_database(), "postgresql", args))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
