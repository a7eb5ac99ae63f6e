"""One HAProxy collector pass at 1,000 servers vs the bare `show stat` fetch and CSV parse.

Starts a real HAProxy (the `haproxy` binary) with a generated config: 1,000 servers in 10
backends, pointing at closed loopback ports with checks off, plus one backend of a few
checked servers on a real listener. Then times, over the runtime API:

- bare: `show stat` over the socket and `csv.DictReader` over the answer;
- pass: `run_pass` of the HAProxy collector on a SQLite store (fetch, parse into records,
  diff and write the balancer's rows and rollups, the balancer-only members' catalog pass).

Run: .venv/bin/python bench/haproxy_pass.py [--servers N] [--passes N]
Prints the median of each and the ratio pass / bare (goal <= 1.5).
"""

from __future__ import annotations

import argparse
import csv
import gc
import http.server
import io
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.collection.runner import run_pass  # noqa: E402
from app.config import Config, HAProxyConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.models import Balancer  # noqa: E402
from app.store import migrate  # noqa: E402
from collectors.haproxy import HAProxyCollector, runtime_command  # noqa: E402

GOAL = 1.5
LOOPBACK = "127.0.0.1"
PER_BACKEND = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def haproxy_config(servers: int, runtime_port: int, health_port: int) -> str:
    lines = [
        "global",
        f"    stats socket ipv4@{LOOPBACK}:{runtime_port} level admin",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "backend checked",
        "    option httpchk GET /health",
        *(f"    server c{n} {LOOPBACK}:{health_port} check inter 1s" for n in range(1, 4)),
    ]
    for number in range(servers):
        if number % PER_BACKEND == 0:
            lines.append(f"backend be{number // PER_BACKEND}")
        # Closed ports, never connected to: nothing sends traffic and checks are off.
        lines.append(f"    server s{number} 127.0.{number // 250}.{number % 250 + 1}:9 weight 1")
    return "\n".join(lines) + "\n"


def start_health_listener() -> http.server.ThreadingHTTPServer:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # HAProxy's checks hang up as soon as they have the status line

    server = Quiet((LOOPBACK, 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bare_pass(runtime: str) -> int:
    text = runtime_command(runtime, "show stat")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("# "))))
    return len(rows)


def timed(fn, passes: int) -> list[float]:
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved(first, second, passes: int) -> tuple[list[float], list[float]]:
    """Time two things turn about, so a shared machine's load weighs on both alike."""
    a, b = [], []
    for _ in range(passes):
        a += timed(first, 1)
        b += timed(second, 1)
    return a, b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=30)
    args = parser.parse_args()
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if binary is None:
        print("haproxy is not installed (Debian package haproxy)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-haproxy-"))
    health = start_health_listener()
    runtime_port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(haproxy_config(args.servers, runtime_port, health.server_address[1]))
    process = subprocess.Popen(
        [binary, "-f", str(config), "-db"],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "haproxy.log").open("wb"),
    )
    runtime = f"tcp://{LOOPBACK}:{runtime_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if "# pxname" in runtime_command(runtime, "show stat", 2):
                    break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    print((workdir / "haproxy.log").read_text(), file=sys.stderr)
                    raise
            time.sleep(0.1)
        url = f"sqlite:///{workdir / 'bench.db'}"
        migrate.upgrade(url)
        qd = Quarterdeck.from_config(
            Config(
                store=StoreConfig(url=url),
                haproxy=(HAProxyConfig(name="edge", stats_url="", runtime=runtime),),
            )
        )
        collector = HAProxyCollector("edge", runtime=runtime, clock=qd.clock)
        gc.freeze()  # as `quarterdeck serve` does after start-up
        rows = bare_pass(runtime)
        first = timed(lambda: run_pass(qd, collector), 1)[0]  # every row is new
        assert run_pass(qd, collector).ok
        bare, passes = interleaved(
            lambda: bare_pass(runtime), lambda: run_pass(qd, collector), args.passes
        )
        diffed = []
        for _ in range(args.passes):  # the member read and diff run as when anything changed
            with qd.store.session(write=True) as db:
                db.execute(update(Balancer).values(members_digest=None))
            diffed += timed(lambda: run_pass(qd, collector), 1)
        qd.feed.close()
        qd.store.dispose()
    finally:
        process.terminate()
        process.wait(timeout=10)
        health.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    bare_ms = statistics.median(bare) * 1000
    pass_ms = statistics.median(passes) * 1000
    ratio = pass_ms / bare_ms
    diffed_ms = statistics.median(diffed) * 1000
    print(
        f"haproxy servers: {args.servers} ({rows} CSV rows), {args.passes} passes each, interleaved"
    )
    print(f"first pass (all rows new): {first * 1000:.1f} ms")
    print(f"bare show stat + csv parse: median {bare_ms:.1f} ms")
    print(f"collector pass (fetch + parse + store): median {pass_ms:.1f} ms")
    print(
        f"collector pass with the full member diff: median {diffed_ms:.1f} ms"
        f" (ratio {diffed_ms / bare_ms:.2f})"
    )
    print(
        f"ratio pass / bare: {ratio:.2f} (goal <= {GOAL}) -> {'met' if ratio <= GOAL else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
