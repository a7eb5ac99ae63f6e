"""What the demo fleet costs at idle: CPU of every fleet process, as a share of one core.

`python bench/demo_fleet_cpu.py [--window-s 60] [--warmup-s 20]` starts the Consul double and
the demo fleet as `quarterdeck demo` does (10 instances, HAProxy, nginx and Prometheus where
installed, 300 WebSocket clients, 3 requests a second, 5 s checks and scrapes), lets the clients
connect, then adds up the CPU time of every process below this one (nginx workers included)
over the window. Goal (issue 7): the whole fleet well under 10% of a core.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=20.0)
    args = parser.parse_args()
    with ConsulDouble() as double, tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
        fleet = DemoFleet(Path(folder), double.url)
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
            started = time.monotonic()
            time.sleep(args.window_s)
            elapsed = time.monotonic() - started
            used = {pid: cpu_seconds(pid) - before[pid] for pid in tree}
            own_after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            fleet.stop()
    own = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    total = sum(used.values())
    share = total / elapsed
    print(f"demo fleet CPU over {elapsed:.0f} s ({len(tree)} processes):")
    for pid, seconds in sorted(used.items(), key=lambda item: -item[1]):
        print(f"  {labels[pid]:<14} {100 * seconds / elapsed:5.2f}% of a core")
    print(f"  (the Consul double running the checks, in this process: {100 * own / elapsed:.2f}%)")
    print(
        f"fleet total: {100 * share:.2f}% of a core; goal < {100 * GOAL_SHARE:.0f}%; "
        f"ratio {share / GOAL_SHARE:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
