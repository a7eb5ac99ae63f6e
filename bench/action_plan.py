"""Plan latency of an instance drain at fleet scale (issue 10: p95 <= 200 ms at 2,000 services).

Run: .venv/bin/python bench/action_plan.py [--services 2000] [--backends 200] [--plans 100]

A fresh SQLite store holds `--services` static services of two instances each, collected by
the real static collector; a real HAProxy (runtime API over TCP) has `--backends` backends of
two unchecked servers, each matched by address to a service's instances, collected by the real
HAProxy collector. Then `submit_action(dry_run=True)` plans a drain of one instance N times:
the store reads (instance, balancer members, blast radius, push connections) and the live
read of the HAProxy server state. p50/p95 against the goal. Then `--drains` rounds of drain
and ready run for real, each timed from submission until `show stat` shows the new state
(goal: within one second).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.actions.running import ActionRequest, submit_action  # noqa: E402
from app.actions.sources import close_adapters, configured_adapters  # noqa: E402
from app.collection.registry import configured_sources  # noqa: E402
from app.collection.runner import run_pass  # noqa: E402
from app.config import Config, HAProxyConfig, StaticServiceConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.store import migrate  # noqa: E402
from collectors.haproxy import runtime_command  # noqa: E402
from tests.fixtures.haproxy import HAPROXY_CONFIG, Member, backend_block  # noqa: E402
from tests.fixtures.processes import (  # noqa: E402
    LOOPBACK,
    ServerProcess,
    free_ports,
    http_get,
    require_binary,
)

GOAL_MS = 200.0


def address(service: int, instance: int) -> str:
    return f"10.{service // 250}.{service % 250}.{instance + 1}:8000"


def server_status(runtime_port: int, backend: str, server: str) -> str:
    """The server's `status` in `show stat`, over the runtime API."""
    text = runtime_command(f"tcp://{LOOPBACK}:{runtime_port}", "show stat")
    lines = text.splitlines()
    header = lines[0][2:].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row["status"]
    raise LookupError(f"{backend}/{server} is not in show stat")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--backends", type=int, default=200)
    parser.add_argument("--plans", type=int, default=100)
    parser.add_argument("--drains", type=int, default=20, help="drain/ready rounds, timed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qd-bench-plan-"))
    try:
        binary = require_binary("haproxy", "haproxy")
        frontend, stats, runtime = free_ports(3)
        backends = "\n".join(
            backend_block(
                f"svc-{n:04d}",
                [Member(address(n, i), name=f"s{i + 1}", check=False) for i in range(2)],
                None,
            )
            for n in range(args.backends)
        )
        config_path = workdir / "haproxy.cfg"
        config_path.write_text(
            HAPROXY_CONFIG.format(
                loopback=LOOPBACK,
                runtime_port=runtime,
                unix_socket="",
                frontend_port=frontend,
                stats_port=stats,
                backend="svc-0000",
                routes="",
                backends=backends,
            )  # fmt: skip
        )
        url = f"sqlite:///{workdir / 'quarterdeck.db'}"
        migrate.upgrade(url)
        config = Config(
            store=StoreConfig(url=url),
            static_services=tuple(
                StaticServiceConfig(name=f"svc-{n:04d}", instances=(address(n, 0), address(n, 1)))
                for n in range(args.services)
            ),
            haproxy=(
                HAProxyConfig(
                    name="edge",
                    stats_url=f"http://{LOOPBACK}:{stats}/stats",
                    runtime=f"tcp://{LOOPBACK}:{runtime}",
                ),
            ),
        )
        argv = [binary, "-f", config_path, "-db"]
        with ServerProcess("haproxy", argv, log_path=workdir / "haproxy.log", cwd=workdir) as hp:
            hp.wait_ready(lambda: http_get(f"http://{LOOPBACK}:{stats}/stats;csv")[0] == 200)
            qd = Quarterdeck.from_config(config)
            for source in configured_sources(config, qd.clock):
                result = run_pass(qd, source.collector)
                assert result.ok, (source.name, result.error)
            adapters = configured_adapters(config)
            target = args.backends // 2
            request = ActionRequest("drain", f"svc-{target:04d}", address(target, 0), dry_run=True)
            plan = submit_action(qd, adapters, "bench", request)
            assert [s["source"] for s in plan["plan"]] == ["edge"], plan
            timings = []
            for _ in range(args.plans):
                started = time.perf_counter()
                submit_action(qd, adapters, "bench", request)
                timings.append((time.perf_counter() - started) * 1000)
            visible = []
            for round_number in range(args.drains):
                action = "drain" if round_number % 2 == 0 else "ready"
                wanted = "DRAIN" if action == "drain" else "no check"
                started = time.perf_counter()
                run = dataclasses.replace(request, action=action, dry_run=False)
                assert submit_action(qd, adapters, "bench", run)["status"] == "done"
                while server_status(runtime, f"svc-{target:04d}", "s1") != wanted:
                    time.sleep(0.005)
                visible.append((time.perf_counter() - started) * 1000)
            close_adapters(adapters)
            qd.store.dispose()
        ordered = sorted(timings)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        result = {
            "services": args.services,
            "instances": args.services * 2,
            "balancer_members": args.backends * 2,
            "plans": args.plans,
            "p50_ms": round(statistics.median(timings), 1),
            "p95_ms": round(p95, 1),
            "goal_p95_ms": GOAL_MS,
            "met": p95 <= GOAL_MS,
            "drain_or_ready_visible_in_show_stat_ms": {
                "rounds": len(visible),
                "p50": round(statistics.median(visible), 1),
                "max": round(max(visible), 1),
                "goal": 1000.0,
            },
        }
        print(
            json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items())
        )
        return 0 if result["met"] else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
