"""Leader takeover among `quarterdeck serve` replicas on PostgreSQL, against the collection interval.

Run: .venv/bin/python bench/leader_takeover.py [--replicas 3] [--rounds 5] [--interval 10]
     [--heartbeat 1.0] [--how kill|cut|both] [--postgres URL] [--json]

Starts `--replicas` real `quarterdeck serve` processes on one fresh PostgreSQL database
(a throwaway cluster unless `--postgres` names a server's admin database), each with one
static source polled every `--interval` s. Each round takes the leader down — `kill`: SIGKILL
of its process; `cut`: `pg_terminate_backend` of its lock connection, the process living on —
and measures, from that moment:

- *lock taken*: when another replica recorded itself as leader (the `leader` row's `since`);
- *first run*: when the new leader started its first job run (the newest term's first
  `job_runs` row): the takeover time. Goal: ≤ one collection interval.

It also checks that no job ran on two replicas at once (each job's runs, by start, end before
the next starts). A killed replica is started again before the next round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.replicas.locks import ADVISORY_KEY, libpq_conninfo  # noqa: E402
from bench.serve_replicas import Replicas, postgres_database  # noqa: E402

STATIC = '[[static_services]]\nname = "orders"\ninstances = ["10.0.0.5:8000"]\n'


def lock_holder_pid(url: str) -> int:
    high, low = (ADVISORY_KEY >> 32) & 0xFFFFFFFF, ADVISORY_KEY & 0xFFFFFFFF
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s AND objid = %s",
            (high, low),
        ).fetchone()
    if row is None:
        raise RuntimeError("nobody holds the leader lock")
    return row[0]


def overlaps(runs) -> int:
    by_job = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    count = 0
    for job_runs in by_job.values():
        job_runs.sort(key=lambda r: r.started_at)
        for a, b in zip(job_runs, job_runs[1:], strict=False):
            if a.started_at + timedelta(seconds=a.duration_s) > b.started_at:
                count += 1
    return count


def one_round(replicas: Replicas, how: str) -> dict:
    old = replicas.wait_for_leader()
    victim = replicas.by_name(old.replica)
    at = datetime.now(UTC)
    if how == "kill":
        victim.process.kill()
        victim.process.wait()
    else:
        pid = lock_holder_pid(replicas.store_url)
        with psycopg.connect(libpq_conninfo(replicas.store_url), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    new = replicas.wait_for_leader(other_than=old.replica, timeout=120)
    first_run = min(r.started_at for r in replicas.job_runs() if r.term == new.term)
    if how == "kill":  # keep the number of replicas
        replicas.forget(victim)
        replicas.start(victim.name)
    return {
        "how": how,
        "from": old.replica,
        "to": new.replica,
        "lock_taken_s": round((new.since_at - at).total_seconds(), 3),
        "first_run_s": round((first_run - at).total_seconds(), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--how", choices=("kill", "cut", "both"), default="both")
    parser.add_argument("--postgres", help="URL of a PostgreSQL server's admin database")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.replicas < 2:
        parser.error("--replicas must be at least 2")
    print(f"load average {os.getloadavg()[0]:.2f}; {args.replicas} replicas, "
          f"interval {args.interval} s, heartbeat {args.heartbeat} s")  # fmt: skip
    results = []
    with postgres_database(args.postgres) as url:
        replicas = Replicas(url, STATIC, heartbeat_s=args.heartbeat, interval_s=args.interval)
        try:
            for i in range(args.replicas):
                replicas.start(f"r{i + 1}")
            hows = ["kill", "cut"] if args.how == "both" else [args.how]
            for i in range(args.rounds):
                result = one_round(replicas, hows[i % len(hows)])
                results.append(result)
                print(
                    f"round {i + 1} ({result['how']}): {result['from']} -> {result['to']}: "
                    f"lock taken {result['lock_taken_s']:.2f} s, "
                    f"first run {result['first_run_s']:.2f} s"
                )
            overlapping = overlaps(replicas.job_runs())
        finally:
            replicas.stop_all()
    takeovers = [r["first_run_s"] for r in results]
    worst = max(takeovers)
    verdict = "met" if worst <= args.interval and not overlapping else "MISSED"
    print(
        f"takeover: median {statistics.median(takeovers):.2f} s, worst {worst:.2f} s; "
        f"goal <= {args.interval} s (one collection interval): {verdict}; "
        f"job runs overlapping across replicas: {overlapping}"
    )
    if args.json:
        print(json.dumps({"rounds": results, "overlapping_runs": overlapping}, indent=2))
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    raise SystemExit(main())
