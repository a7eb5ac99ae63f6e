"""Consul at fleet scale: first pass, idle CPU, change-to-API latency, services pages.

The Consul double runs in a child process, seeded with `seed_scale`, so the CPU figures of this
process are Quarterdeck's alone (the double's own CPU is reported beside them).

1. First full pass (ConsulCollector + run_pass into a fresh SQLite store) and its ratio to the
   bare time to GET and json.loads the same responses (catalog/services, health/state/any, every
   health/service/<name>) with requests on the collector's pool size (goal ratio <= 2.0).
2. CPU per minute while nothing changes, with CollectionService running, over whole
   blocking-query cycles (goal: near zero).
3. Change-to-API latency: flip a check on a random service, poll /api/v1/services/<name> with
   an API token through the test client until it shows (goal p95 <= 1 s); a change not shown
   within 15 s counts as lost (infinitely late) and is checked again at the end of the phase.
4. Server time of the /services page and /api/v1/services at the full fleet (goal p95 <= 150 ms).

Run: .venv/bin/python bench/consul_scale.py [--services 2000 --instances 5] [--json]
     [--case scale|churn|spurious-wake|output-churn|designs]  (fault cases: consul_fault_cases.py)
Timed figures are repeated (median of --repeats passes, 50 changes, --requests requests) because
the machine may be shared; `--profile` adds a CPU-time cProfile of the first pass and of the two
pages (every thread), after the timed runs. Results and how to read them: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import logging
import math
import multiprocessing
import os
import platform
import pstats
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from flask.logging import default_handler  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from app.auth.accounts import create_token, create_user  # noqa: E402
from app.collection.runner import run_pass  # noqa: E402
from app.collection.scheduler import CollectionService  # noqa: E402
from app.config import Config, ConsulConfig, ServerConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.models import CollectorRun, Service  # noqa: E402
from app.store import migrate  # noqa: E402
from app.views.services import PAGE_SIZE  # noqa: E402
from collectors.consul import ConsulCollector  # noqa: E402
from collectors.consul_api import FETCH_WORKERS  # noqa: E402

PASS_RATIO_GOAL = 2.0
LATENCY_P95_GOAL_S = 1.0
PAGE_P95_GOAL_MS = 150.0
CHANGE_TIMEOUT_S = 15.0
# The watches a first pass starts are closed at once, but each ends only when its long poll
# returns (with the full answer, which it parses): a short wait keeps them out of later phases.
PASS_WAIT_S = 5
POLL_EVERY_S = 0.01
PASSWORD = "bench password, not secret"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


# -- the Consul double, in its own process ---------------------------------------------------


def _serve_double(conn, services: int, instances: int) -> None:
    """Child process: seed and serve the double; obey set_check / cpu / stop from the pipe."""
    from demo.consul import ConsulDouble
    from demo.fleet_seed import seed_scale

    double = ConsulDouble()
    names = seed_scale(double, services=services, instances_per_service=instances)
    double.start()
    conn.send((double.url, names))
    while True:
        command, args = conn.recv()
        if command == "set_check":
            double.set_check(*args)
            conn.send(None)
        elif command == "cpu":
            conn.send(time.process_time())
        elif command == "start_fault":
            kind, rate, kwargs = args
            double.start_fault(kind, rate, **kwargs)
            conn.send(None)
        elif command == "stop_fault":
            double.stop_fault(*args)
            conn.send(None)
        elif command == "fault_events":
            conn.send(double.fault_events(*args))
        elif command == "request_count":
            conn.send(double.request_count(*args))
        else:
            break
    double.stop()
    conn.send(None)


class DoubleProcess:
    """A seeded Consul double served from a child process."""

    def __init__(self, services: int, instances: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve_double, args=(child, services, instances), daemon=True
        )
        self._process.start()
        self.url, self.names = self._conn.recv()
        self._lock = threading.Lock()

    def _ask(self, command: str, *args):
        with self._lock:
            self._conn.send((command, args))
            return self._conn.recv()

    def set_check(self, check_id: str, status: str, output: str) -> None:
        """Change one check in the double (Consul raises the health index)."""
        self._ask("set_check", check_id, status, output)

    def cpu_s(self) -> float:
        """The child's CPU time so far."""
        return self._ask("cpu")

    def start_fault(self, kind: str, rate_per_s: float, **kwargs) -> None:
        """Start one of the double's rate faults (churn, output_churn, spurious_wake)."""
        self._ask("start_fault", kind, rate_per_s, kwargs)

    def stop_fault(self, kind: str) -> None:
        self._ask("stop_fault", kind)

    def fault_events(self, kind: str) -> int:
        """How many changes or wakes a rate fault has made so far."""
        return self._ask("fault_events", kind)

    def request_count(self, path_prefix: str) -> int:
        """How many requests reached the double under a path."""
        return self._ask("request_count", path_prefix)

    def stop(self) -> None:
        self._ask("stop")
        self._process.join(timeout=10)


# -- helpers -----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def finite(value: float) -> float | None:
    """None (JSON null) for an infinite figure."""
    return None if math.isinf(value) else value


def bench_config(store_url: str, consul_url: str, wait_s: int) -> Config:
    return Config(
        store=StoreConfig(url=store_url),
        server=ServerConfig(cookie_secure=False, bind="127.0.0.1:0"),
        consul=ConsulConfig(url=consul_url, token_env="", wait_s=wait_s),
    )


def fresh_qd(tmp: Path, label: str, consul_url: str, wait_s: int) -> Quarterdeck:
    url = f"sqlite:///{tmp}/{label}.db"
    migrate.upgrade(url)
    return Quarterdeck.from_config(bench_config(url, consul_url, wait_s))


def close_qd(qd: Quarterdeck) -> None:
    qd.feed.close()
    qd.store.dispose()


def count_services(qd: Quarterdeck) -> int:
    with qd.store.session() as db:
        return db.scalar(select(func.count()).select_from(Service).where(Service.name != "consul"))


class ThreadProfiler:
    """cProfile, timed by each thread's CPU clock, in this thread and every thread it starts."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_args) -> None:
        sys.setprofile(None)  # this thread only; cProfile installs its own hook
        profile = cProfile.Profile(time.thread_time)
        with self._lock:
            self.profiles.append(profile)
        profile.enable()

    @contextlib.contextmanager
    def on(self):
        main = cProfile.Profile(time.thread_time)
        self.profiles.append(main)
        threading.setprofile(self._start_in_thread)
        main.enable()
        try:
            yield self
        finally:
            main.disable()
            threading.setprofile(None)

    def report(self, title: str, limit: int = 25) -> str:
        for profile in self.profiles:
            with contextlib.suppress(ValueError):
                profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=out)
        for profile in self.profiles[1:]:
            with contextlib.suppress(TypeError):  # a thread that never ran any Python
                stats.add(profile)
        out.write(f"== profile: {title} (CPU time, all threads; tottime, then cumulative) ==\n")
        stats.sort_stats("tottime").print_stats(limit)
        stats.sort_stats("cumulative").print_stats(limit)
        return out.getvalue()


class TimedCollector:
    """The collector as run_pass sees it, timing collect() on the side."""

    def __init__(self, inner: ConsulCollector) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.collect_s = 0.0

    def collect(self):
        start = time.perf_counter()
        try:
            return self.inner.collect()
        finally:
            self.collect_s = time.perf_counter() - start


class AppErrors(logging.Handler):
    """Count the app's logged errors by their exception, instead of printing tracebacks."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        key = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if exc else record.getMessage()
        self.counts[key] = self.counts.get(key, 0) + 1


# -- 1. first full pass ------------------------------------------------------------------------


def bare_fetch(consul_url: str) -> float:
    """GET and json.loads what a full pass reads, with the collector's pool size."""
    local = threading.local()

    def get(path: str):
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.get(consul_url + path, timeout=60)
        response.raise_for_status()
        return json.loads(response.content)

    start = time.perf_counter()
    catalog = get("/v1/catalog/services")
    get("/v1/health/state/any")
    with ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
        list(pool.map(lambda name: get(f"/v1/health/service/{name}"), sorted(catalog)))
    return time.perf_counter() - start


def full_pass(tmp: Path, label: str, consul_url: str) -> tuple[float, float, int]:
    """Time a first pass into an empty store; return (total, collect part, services stored)."""
    qd = fresh_qd(tmp, label, consul_url, PASS_WAIT_S)
    collector = TimedCollector(ConsulCollector(consul_url, wait_s=PASS_WAIT_S, clock=qd.clock))
    try:
        start = time.perf_counter()
        result = run_pass(qd, collector)
        total = time.perf_counter() - start
        if not result.ok:
            raise RuntimeError(f"the first pass failed: {result.error}")
    finally:
        collector.inner.close()
    stored = count_services(qd)
    close_qd(qd)
    (tmp / f"{label}.db").unlink()
    return total, collector.collect_s, stored


def bench_full_pass(args, double: DoubleProcess, tmp: Path, profiles: list[str]) -> dict:
    bare_fetch(double.url)  # warm the double's caches and the connection code paths
    cold_s, _, _ = full_pass(tmp, "pass-cold", double.url)  # imports, SQL caches
    bare, ours, collect = [], [], []
    for k in range(args.repeats):
        bare.append(bare_fetch(double.url))
        total, collect_s, stored = full_pass(tmp, f"pass-{k}", double.url)
        if stored != len(double.names):
            raise RuntimeError(f"the pass stored {stored} services, not {len(double.names)}")
        ours.append(total)
        collect.append(collect_s)
    if args.profile:
        profiler = ThreadProfiler()
        with profiler.on():
            full_pass(tmp, "pass-profiled", double.url)
        profiles.append(profiler.report("first full pass"))
    ratio = statistics.median(ours) / statistics.median(bare)
    return {
        "repeats": args.repeats,
        "cold_pass_s": cold_s,
        "pass_s": statistics.median(ours),
        "pass_runs_s": [round(v, 3) for v in ours],
        "collect_s": statistics.median(collect),
        "store_s": statistics.median(o - c for o, c in zip(ours, collect, strict=True)),
        "bare_s": statistics.median(bare),
        "bare_runs_s": [round(v, 3) for v in bare],
        "ratio": ratio,
        "best_ratio": min(ours) / min(bare),
    }


# -- 2-4. with CollectionService running ---------------------------------------------------------


def wait_for_first_pass(qd: Quarterdeck, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with qd.store.session() as db:
            runs = db.scalar(
                select(func.count()).select_from(CollectorRun).where(CollectorRun.ok.is_(True))
            )
        if runs:
            return
        time.sleep(0.2)
    raise RuntimeError("CollectionService did not finish its first pass")


def collector_runs(qd: Quarterdeck) -> int:
    with qd.store.session() as db:
        return db.scalar(select(func.count()).select_from(CollectorRun))


def bench_idle_cpu(args, double: DoubleProcess, qd: Quarterdeck) -> dict:
    """CPU of this process and of the double over whole blocking-query cycles with no change.

    Each long poll returns once per wait (plus Consul's jitter of up to wait/16) with the full
    answer, so the idle cost comes in bursts: measure whole cycles, not a slice of one.
    """
    window_s = args.wait_s * (1 + 1 / 32)  # the mean wait with jitter
    windows = []
    for _ in range(args.idle_cycles):
        runs0 = collector_runs(qd)
        wall0, cpu0, child0 = time.perf_counter(), time.process_time(), double.cpu_s()
        time.sleep(window_s)
        wall = time.perf_counter() - wall0
        cpu, child = time.process_time() - cpu0, double.cpu_s() - child0
        windows.append(
            {
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 3),
                "double_cpu_s": round(child, 3),
                "passes": collector_runs(qd) - runs0,
            }
        )
    wall = sum(w["wall_s"] for w in windows)
    return {
        "idle_s": wall,
        "wait_s": args.wait_s,
        "cpu_s_per_min": sum(w["cpu_s"] for w in windows) / wall * 60,
        "double_cpu_s_per_min": sum(w["double_cpu_s"] for w in windows) / wall * 60,
        "passes": sum(w["passes"] for w in windows),
        "windows": windows,
    }


def change_shows(body: dict, instance_id: str, output: str) -> bool:
    for instance in body.get("instances", []):
        if instance.get("id") == instance_id:
            return any(c.get("output") == output for c in instance.get("checks", []))
    return False


def bench_latency(args, double: DoubleProcess, client, token: str) -> dict:
    """Flip a check on random services; time until the API shows each change."""
    rng = random.Random(args.seed)
    headers = {"Authorization": f"Bearer {token}"}
    latencies, lost, errors, polls = [], [], 0, 0
    for k, name in enumerate(rng.sample(double.names, args.changes)):
        instance_id = f"{name}-{rng.randrange(args.instances)}"
        output = f"bench change {k}: HTTP GET /healthz: 503 Service Unavailable"
        start = time.perf_counter()
        double.set_check(f"service:{instance_id}", "critical", output)
        while True:
            response = client.get(f"/api/v1/services/{name}", headers=headers)
            polls += 1
            if response.status_code != 200:
                errors += 1  # counted and reported; the poll goes on
            elif change_shows(response.get_json(), instance_id, output):
                latencies.append(time.perf_counter() - start)
                break
            if time.perf_counter() - start > CHANGE_TIMEOUT_S:
                lost.append((name, instance_id, output))
                break
            time.sleep(POLL_EVERY_S)
        time.sleep(rng.uniform(0.1, 0.3))  # let the collector go back to waiting
    # A change that never showed counts as infinitely late, not as a missing sample.
    every = latencies + [math.inf] * len(lost)
    still_lost = [
        instance_id
        for name, instance_id, output in lost
        if not change_shows(
            client.get(f"/api/v1/services/{name}", headers=headers).get_json() or {},
            instance_id,
            output,
        )
    ]
    return {
        "changes": args.changes,
        "lost": len(lost),
        "still_lost_at_end": still_lost,
        "polls": polls,
        "poll_errors": errors,
        "p50_s": finite(percentile(every, 50)),
        "p95_s": finite(percentile(every, 95)),
        "p95_shown_s": percentile(latencies, 95),
        "max_shown_s": max(latencies),
    }


def sign_in(client, name: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    match = CSRF_RE.search(page)
    if not match:
        raise RuntimeError("the /login page has no csrf_token")
    response = client.post(
        "/login", data={"username": name, "password": PASSWORD, "csrf_token": match.group(1)}
    )
    if response.status_code != 302:
        raise RuntimeError(f"sign-in failed: HTTP {response.status_code}")


def time_requests(client, path: str, n: int, headers=None) -> tuple[list[float], int]:
    """Time n requests (after one warm-up); return the times and how many were not 200."""
    client.get(path, headers=headers)  # template compile, first-query caches
    times, errors = [], 0
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append(time.perf_counter() - start)
        errors += response.status_code != 200
    return times, errors


def bench_pages(args, app, token: str, profiles: list[str]) -> dict:
    page_client = app.test_client()
    sign_in(page_client, "bench-viewer")
    headers = {"Authorization": f"Bearer {token}"}
    api_client = app.test_client()
    body = api_client.get("/api/v1/services?limit=5000", headers=headers).get_json()
    listed = len([s for s in body["services"] if s["name"] != "consul"])
    page, page_errors = time_requests(page_client, "/services", args.requests)
    # The list is paged: a full page far down shows what a deep offset costs.
    deep = f"/services?offset={max(listed - PAGE_SIZE, 0)}"
    last, last_errors = time_requests(page_client, deep, args.requests)
    api, api_errors = time_requests(
        api_client, "/api/v1/services?limit=5000", args.requests, headers
    )
    if args.profile:
        for path, client, hdrs in (
            ("/services", page_client, None),
            ("/api/v1/services", api_client, headers),
        ):
            profiler = ThreadProfiler()
            with profiler.on():
                for _ in range(5):
                    client.get(path, headers=hdrs)
            profiles.append(profiler.report(f"5 x GET {path}"))
    return {
        "services_listed": listed,
        "requests": args.requests,
        "errors": page_errors + last_errors + api_errors,
        "page_p50_ms": percentile(page, 50) * 1000,
        "page_p95_ms": percentile(page, 95) * 1000,
        "last_page_p50_ms": percentile(last, 50) * 1000,
        "last_page_p95_ms": percentile(last, 95) * 1000,
        "api_p50_ms": percentile(api, 50) * 1000,
        "api_p95_ms": percentile(api, 95) * 1000,
    }


def join_closed_watches() -> None:
    """Wait for the long polls of the collectors closed in phase 1 to end."""
    for thread in threading.enumerate():
        if thread.name.startswith("consul-watch-"):
            thread.join(timeout=PASS_WAIT_S * 1.1 + 30)


def bench_live(args, double: DoubleProcess, tmp: Path, profiles: list[str]) -> dict:
    join_closed_watches()
    qd = fresh_qd(tmp, "live", double.url, args.wait_s)
    with qd.store.session() as db:
        create_user(db, "bench-viewer", "viewer", PASSWORD)
        token = create_token(db, "bench", "viewer")
    app = create_app(qd=qd)
    # As `quarterdeck serve` does (app/cli.py): what start-up built leaves the GC's scans.
    gc.collect()
    gc.freeze()
    app_errors = AppErrors()
    app.logger.removeHandler(default_handler)
    app.logger.addHandler(app_errors)
    service = CollectionService(qd)
    service.start()
    try:
        wait_for_first_pass(qd)
        time.sleep(2)  # let the watches settle into their long polls
        idle = bench_idle_cpu(args, double, qd)
        print(f"idle CPU done: {idle['windows']}", flush=True)
        latency = bench_latency(args, double, app.test_client(), token)
        print(f"latency done: {latency['lost']} of {latency['changes']} changes lost", flush=True)
        pages = bench_pages(args, app, token, profiles)
    finally:
        service.stop()
        close_qd(qd)
    return {"idle": idle, "latency": latency, "pages": pages, "app_errors": app_errors.counts}


# -- report ------------------------------------------------------------------------------------


def commit() -> str:
    """The checked-out commit, marked dirty when the measured code has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "collectors", "demo"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}{' + local changes' if changes else ''}"


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "commit": commit(),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
    }


def seconds(value: float | None) -> str:
    return f"{value:.3f} s" if value is not None else f"> {CHANGE_TIMEOUT_S:.0f} s (lost)"


def ratio(value: float | None, goal: float) -> str:
    return f"{value / goal:.2f}" if value is not None else "missed"


def table(results: dict) -> str:
    fp, idle = results["full_pass"], results["live"]["idle"]
    lat, pages = results["live"]["latency"], results["live"]["pages"]
    rows = [
        ("figure", "measured", "goal", "measured/goal"),
        (
            "first full pass (collect + store)",
            f"{fp['pass_s']:.2f} s",
            "",
            f"collect {fp['collect_s']:.2f} s + store {fp['store_s']:.2f} s",
        ),
        ("bare GET + json.loads, same requests", f"{fp['bare_s']:.2f} s", "", "baseline"),
        (
            "  ratio pass / bare (median)",
            f"{fp['ratio']:.2f}",
            f"<= {PASS_RATIO_GOAL}",
            f"{fp['ratio'] / PASS_RATIO_GOAL:.2f}",
        ),
        (
            f"idle CPU, this process ({idle['idle_s']:.0f} s)",
            f"{idle['cpu_s_per_min']:.3f} CPU-s/min",
            "~0",
            f"{idle['cpu_s_per_min'] / 60:.2%} of a core",
        ),
        (
            "idle CPU, Consul double (child)",
            f"{idle['double_cpu_s_per_min']:.3f} CPU-s/min",
            "",
            f"{idle['double_cpu_s_per_min'] / 60:.2%} of a core",
        ),
        (
            f"change -> API p50 ({lat['changes']} changes)",
            seconds(lat["p50_s"]),
            "",
            "",
        ),
        (
            f"change -> API p95 ({lat['lost']} lost, {len(lat['still_lost_at_end'])} for good)",
            seconds(lat["p95_s"]),
            f"<= {LATENCY_P95_GOAL_S} s",
            ratio(lat["p95_s"], LATENCY_P95_GOAL_S),
        ),
        (
            "  p95 of the changes that showed",
            seconds(lat["p95_shown_s"]),
            f"<= {LATENCY_P95_GOAL_S} s",
            ratio(lat["p95_shown_s"], LATENCY_P95_GOAL_S),
        ),
        (
            "  API polls that failed",
            f"{lat['poll_errors']} of {lat['polls']}",
            "0",
            "",
        ),
        (
            f"/services page p95 (p50 {pages['page_p50_ms']:.0f} ms)",
            f"{pages['page_p95_ms']:.0f} ms",
            f"<= {PAGE_P95_GOAL_MS:.0f} ms",
            f"{pages['page_p95_ms'] / PAGE_P95_GOAL_MS:.2f}",
        ),
        (
            f"/services?offset={pages['services_listed'] - PAGE_SIZE} p95 (p50 {pages['last_page_p50_ms']:.0f} ms)",
            f"{pages['last_page_p95_ms']:.0f} ms",
            f"<= {PAGE_P95_GOAL_MS:.0f} ms",
            f"{pages['last_page_p95_ms'] / PAGE_P95_GOAL_MS:.2f}",
        ),
        (
            f"/api/v1/services p95 (p50 {pages['api_p50_ms']:.0f} ms)",
            f"{pages['api_p95_ms']:.0f} ms",
            f"<= {PAGE_P95_GOAL_MS:.0f} ms",
            f"{pages['api_p95_ms'] / PAGE_P95_GOAL_MS:.2f}",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if pages["errors"]:
        lines.append(f"page/API requests that failed: {pages['errors']}")
    for error, count in results["live"]["app_errors"].items():
        lines.append(f"app error x{count}: {error}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=5, help="instances per service")
    parser.add_argument("--repeats", type=int, default=5, help="full passes (median)")
    parser.add_argument("--wait-s", type=int, default=ConsulConfig.wait_s, help="blocking wait")
    parser.add_argument(
        "--idle-cycles", type=int, default=3, help="blocking-query cycles of idle CPU measurement"
    )
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=30, help="requests per page")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each phase")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument(
        "--case",
        choices=["scale", "churn", "spurious-wake", "output-churn", "designs"],
        default="scale",
        help="scale: the figures above; the others: see bench/consul_fault_cases.py",
    )
    parser.add_argument(
        "--cpu-window-s", type=float, default=30.0, help="output churn: CPU measured over this"
    )
    parser.add_argument(
        "--output-changes", type=int, default=30, help="output churn: status changes timed"
    )
    args = parser.parse_args()
    os.environ.setdefault("QUARTERDECK_SECRET_KEY", "bench-secret-key-not-for-production")
    results: dict = {
        "services": args.services,
        "instances_per_service": args.instances,
        "machine": machine(),
    }
    profiles: list[str] = []
    print(
        f"Consul double: {args.services} services x {args.instances} instances, "
        f"in a child process; {results['machine']['cpus']} CPUs, "
        f"load {results['machine']['loadavg_start']}; code at {results['machine']['commit']}",
        flush=True,
    )
    double = DoubleProcess(args.services, args.instances)
    if args.case != "scale":
        from bench.consul_fault_cases import run_case

        try:
            with tempfile.TemporaryDirectory(prefix="qd-consul-bench-") as tmp:
                results[args.case], text = run_case(args, double, Path(tmp))
        finally:
            double.stop()
        results["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        print(text)
        print(f"load average at the end: {results['machine']['loadavg_end']}")
        if args.json:
            print(json.dumps(results, indent=2, default=str))
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="qd-consul-bench-") as tmp:
            results["full_pass"] = bench_full_pass(args, double, Path(tmp), profiles)
            print(f"full pass done: {results['full_pass']['pass_runs_s']} s", flush=True)
            results["live"] = bench_live(args, double, Path(tmp), profiles)
    finally:
        double.stop()
    results["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    for text in profiles:
        print(text)
    print(table(results))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
