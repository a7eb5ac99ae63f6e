"""What the demo fleet costs at idle: CPU of every fleet process, as a share of one core.

`python bench/demo_fleet_cpu.py [--window-s 60] [--warmup-s 20]` starts the Consul double and
the demo fleet as `quarterdeck demo` does (10 instances, HAProxy, nginx and Prometheus where
installed, 300 WebSocket clients, 3 requests a second, 5 s checks and scrapes), lets the clients
connect, then adds up the CPU time of every process below this one (nginx workers included)
over the window. Goal (issue 7): the whole fleet well under 10% of a core.

The fleet sends its traces as in the demo (OpenTelemetry SDK, OTLP/HTTP) to a receiver in this
process that counts the spans and answers 200 (its CPU is this process's, reported apart);
`--no-traces` measures the fleet without them.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.consul import ConsulDouble  # noqa: E402
from demo.fleet.supervisor import DemoFleet  # noqa: E402

GOAL_SHARE = 0.10
TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> dict[int, str]:
    """Return {pid: name} of every live process below `root`."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        children.setdefault(int(rest.split()[1]), []).append(pid)
        names[pid] = name
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = names[child]
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """Return a process's user + system CPU time so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class SpanCounter(BaseHTTPRequestHandler):
    """POST /v1/traces: decode the export, count its spans, answer an empty (valid) response."""

    protocol_version = "HTTP/1.1"
    received = {"exports": 0, "bytes": 0, "spans": 0}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        SpanCounter.received["exports"] += 1
        SpanCounter.received["bytes"] += len(body)
        request = ExportTraceServiceRequest.FromString(body)
        SpanCounter.received["spans"] += sum(
            len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--no-traces", action="store_true", help="the fleet sends no traces")
    args = parser.parse_args()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), SpanCounter)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    traces_url = None if args.no_traces else f"http://127.0.0.1:{receiver.server_port}/v1/traces"
    with ConsulDouble() as double, tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
        fleet = DemoFleet(Path(folder), double.url, traces_url=traces_url)
        fleet.start()
        try:
            if not fleet.wait_ready(120):
                print("the fleet did not come up", file=sys.stderr)
                return 1
            time.sleep(args.warmup_s)
            names = {pid: name for name, pid in fleet.pids().items()}
            tree = process_tree(os.getpid())
            labels = {pid: names.get(pid, tree[pid]) for pid in tree}
            before = {pid: cpu_seconds(pid) for pid in tree}
            own_before = resource.getrusage(resource.RUSAGE_SELF)
            exports_before = dict(SpanCounter.received)
            started = time.monotonic()
            time.sleep(args.window_s)
            elapsed = time.monotonic() - started
            used = {pid: cpu_seconds(pid) - before[pid] for pid in tree}
            own_after = resource.getrusage(resource.RUSAGE_SELF)
            exports = {k: v - exports_before[k] for k, v in SpanCounter.received.items()}
        finally:
            fleet.stop()
            receiver.shutdown()
    own = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    total = sum(used.values())
    share = total / elapsed
    print(f"demo fleet CPU over {elapsed:.0f} s ({len(tree)} processes):")
    for pid, seconds in sorted(used.items(), key=lambda item: -item[1]):
        print(f"  {labels[pid]:<14} {100 * seconds / elapsed:5.2f}% of a core")
    print(
        f"  (the Consul double running the checks and the trace receiver, in this process: "
        f"{100 * own / elapsed:.2f}%)"
    )
    if traces_url:
        print(
            f"traces: {exports['spans'] / elapsed:.1f} spans/s in "
            f"{exports['exports'] / elapsed:.1f} exports/s, "
            f"{exports['bytes'] / elapsed / 1024:.1f} KiB/s of OTLP protobuf"
        )
    else:
        print("traces: off (--no-traces)")
    print(
        f"fleet total: {100 * share:.2f}% of a core; goal < {100 * GOAL_SHARE:.0f}%; "
        f"ratio {share / GOAL_SHARE:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
