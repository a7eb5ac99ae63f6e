"""Time from confirmation to an nginx drain validated, reloaded and in effect (goal <= 2 s).

Run: .venv/bin/python bench/action_nginx_drain.py [--rounds 20] [--servers 50]

A real nginx (own prefix, as the tests run it) proxies to an upstream of `--servers` servers:
two real loopback HTTP servers that answer their own name, plus unreachable 10.x addresses
marked `down` so the file has a realistic size. A Quarterdeck context on a fresh SQLite store
knows the two as a static service, collected by the real static and nginx collectors. Each
round submits a drain of web-1 for real (`submit_action`, as the API's confirm does) and
times two moments: the action's answer (the file edited, `nginx -t`, `nginx -s reload`, the
file read back) and the first moment after it when ten requests in a row through nginx all
reach web-2 (the new workers took over). Then a ready puts it back, timed the same way.
p50/p95/max of each against the goal. HAProxy's drain-visible-in-`show stat` time is measured
by bench/action_plan.py (`--drains`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.actions.running import ActionRequest, submit_action  # noqa: E402
from app.actions.sources import close_adapters, configured_adapters  # noqa: E402
from app.collection.registry import configured_sources  # noqa: E402
from app.collection.runner import run_pass  # noqa: E402
from app.config import Config, NginxConfig, StaticServiceConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.store import migrate  # noqa: E402
from tests.fixtures.nginx import command_line, write_config  # noqa: E402
from tests.fixtures.processes import (  # noqa: E402
    LOOPBACK,
    ServerProcess,
    free_port,
    http_get,
    short_temp_dir,
    unprivileged_user,
)

GOAL_S = 2.0


def serve_name(name: str) -> ThreadingHTTPServer:
    """Start a loopback HTTP server that answers every GET with `name`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def answered_by(url: str, tries: int = 10) -> set[str]:
    """Which backends answer `tries` requests in a row through nginx (round robin)."""
    names = set()
    for _ in range(tries):
        status, body = http_get(url)
        names.add(body.strip() if status == 200 else f"HTTP {status}")
    return names


def in_effect(action: str, url: str) -> bool:
    """Drained: ten requests all reach web-2. Ready: web-1 answers again."""
    seen = answered_by(url)
    return seen == {"web-2"} if action == "drain" else "web-1" in seen


def timed_action(qd, adapters, action: str, instance: str, url: str) -> tuple[float, float]:
    """Run the action; return (seconds to its answer, seconds until nginx routes that way)."""
    params = {"force": True} if action == "drain" else {}
    request = ActionRequest(action, "web", instance, params)
    start = time.perf_counter()
    result = submit_action(qd, adapters, "bench", request)
    answered = time.perf_counter() - start
    assert result["status"] == "done", result["steps"]
    deadline = start + 30
    while not in_effect(action, url):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"nginx never routed as {action} asks within 30 s")
    return answered, time.perf_counter() - start


def summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    verdict = "meets" if p95 <= GOAL_S else "MISSES"
    return (
        f"  {label:<34} p50 {statistics.median(ordered) * 1000:7.1f} ms  "
        f"p95 {p95 * 1000:7.1f} ms  max {ordered[-1] * 1000:7.1f} ms  ({verdict} <= {GOAL_S:g} s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="drain/ready rounds")
    parser.add_argument("--servers", type=int, default=50, help="servers in the upstream file")
    args = parser.parse_args()
    binary = shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin")
    if binary is None:
        print("nginx is not installed (Debian package nginx-light)")
        return 1
    backends = {name: serve_name(name) for name in ("web-1", "web-2")}
    addresses = {name: f"{LOOPBACK}:{s.server_address[1]}" for name, s in backends.items()}
    prefix = short_temp_dir("qd-bench-nginx-drain-", reachable_by=unprivileged_user())
    prefix.chmod(0o711)  # workers running as nobody only traverse it
    try:
        for directory in ("conf", "logs", "temp"):
            (prefix / directory).mkdir()
        port = free_port()
        filler = [f"10.9.{n // 250}.{n % 250}:8080 down" for n in range(max(0, args.servers - 2))]
        write_config(prefix, port, "web", [addresses["web-1"], addresses["web-2"], *filler], [])
        command = command_line(binary, prefix)
        with ServerProcess("nginx", command, log_path=prefix / "logs" / "stderr.log") as server:
            server.wait_ready(lambda: http_get(f"http://{LOOPBACK}:{port}/stub_status")[0] == 200)
            return measure(prefix, port, command, addresses, args)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
        for backend in backends.values():
            backend.shutdown()


def measure(prefix: Path, port: int, command: list[str], addresses, args) -> int:
    nginx = NginxConfig(
        name="push",
        status_url=f"http://{LOOPBACK}:{port}/stub_status",
        upstream_conf=str(prefix / "conf" / "upstream.conf"),
        reload=(*command, "-s", "reload"),
        test=(*command, "-t"),
    )
    static = StaticServiceConfig(name="web", instances=(addresses["web-1"], addresses["web-2"]))
    url = f"http://{LOOPBACK}:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        store_url = f"sqlite:///{tmp}/bench.db"
        migrate.upgrade(store_url)
        config = Config(store=StoreConfig(url=store_url), nginx=(nginx,), static_services=(static,))
        qd = Quarterdeck.from_config(config)
        adapters = configured_adapters(qd.config)
        try:
            for source in configured_sources(qd.config, qd.clock):
                assert run_pass(qd, source.collector).ok
            answers: dict[str, list[float]] = {"drain": [], "ready": []}
            effects: dict[str, list[float]] = {"drain": [], "ready": []}
            for _ in range(args.rounds):
                for action in ("drain", "ready"):
                    # A static instance's id is its address.
                    answered, effect = timed_action(qd, adapters, action, addresses["web-1"], url)
                    answers[action].append(answered)
                    effects[action].append(effect)
        finally:
            close_adapters(adapters)
            qd.feed.close()
            qd.store.dispose()
    print(
        f"nginx drain/ready of one server, {args.servers} servers in the file, {args.rounds} rounds:"
    )
    for action in ("drain", "ready"):
        print(summary(f"{action}: answer (edit, -t, reload)", answers[action]))
        print(summary(f"{action}: in effect through nginx", effects[action]))
    return 0 if "MISSES" not in summary("", effects["drain"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
