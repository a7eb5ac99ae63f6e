"""nginx with 1,000 upstream servers: one collection pass against the bare fetch and read.

Starts a real nginx (own prefix, as the tests do) whose upstream file holds `--servers`
servers, and a Quarterdeck context on a fresh SQLite store. It times, best of `--repeat`:

- bare: GET stub_status and a regex pull of every `server` line from the upstream file (the
  least any reader must do; it checks nothing);
- collect: `NginxCollector.collect()` with the file unchanged since the last pass (read and
  compared; the last parse is reused), and after an edit (parsed again with nginx's syntax
  and checks, the records built);
- pass: `run_pass` once the store holds the members (collect + the store's diff and write of
  what changed: the stub_status counters, every pass).

Prints each in ms and the pass's ratio to bare (goal <= 1.5, the issue's goal for HAProxy's
pass applied to nginx), and the first pass (1,000 members and catalog instances inserted).
"""

from __future__ import annotations

import argparse
import gc
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.collection.registry import configured_sources  # noqa: E402
from app.collection.runner import run_pass  # noqa: E402
from app.config import Config, NginxConfig, StoreConfig  # noqa: E402
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

GOAL_RATIO = 1.5
SERVER_LINE = re.compile(r"^\s*server\s+(\S+)([^;]*);", re.MULTILINE)


def best_ms(action, repeat: int) -> float:
    """Return the fastest of `repeat` runs of `action`, in ms (load only ever slows a run)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20, help="runs of each; the best is kept")
    args = parser.parse_args()
    binary = shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin")
    if binary is None:
        print("nginx is not installed (Debian package nginx-light)")
        return 1
    gc.freeze()  # as `quarterdeck serve` does once it has started
    prefix = short_temp_dir("qd-bench-nginx-", reachable_by=unprivileged_user())
    prefix.chmod(0o711)  # workers running as nobody only traverse it
    try:
        for directory in ("conf", "logs", "temp"):
            (prefix / directory).mkdir()
        port = free_port()
        # 10.x addresses nginx never connects to: no traffic goes through the upstream.
        servers = [
            f"10.{n // 250}.{n % 250}.1:8080 weight={1 + n % 5} max_fails=3 fail_timeout=30s"
            + (" down" if n % 97 == 0 else "")
            for n in range(args.servers)
        ]
        write_config(prefix, port, "push", servers, ["least_conn"])
        with ServerProcess(
            "nginx", command_line(binary, prefix), log_path=prefix / "logs" / "stderr.log"
        ) as server:
            status_url = f"http://{LOOPBACK}:{port}/stub_status"
            server.wait_ready(lambda: http_get(status_url)[0] == 200)
            return measure(prefix, status_url, args)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def measure(prefix: Path, status_url: str, args) -> int:
    upstream_conf = prefix / "conf" / "upstream.conf"
    http = requests.Session()

    def bare() -> None:
        http.get(status_url, timeout=5).text  # noqa: B018 - the fetch is what is timed
        found = SERVER_LINE.findall(upstream_conf.read_text())
        assert len(found) == args.servers

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate.upgrade(url)
        nginx = NginxConfig(name="push", status_url=status_url, upstream_conf=str(upstream_conf))
        qd = Quarterdeck.from_config(Config(store=StoreConfig(url=url), nginx=(nginx,)))
        try:
            [source] = configured_sources(qd.config, qd.clock)
            collector = source.collector
            start = time.perf_counter()
            first = run_pass(qd, collector)
            first_ms = (time.perf_counter() - start) * 1000
            assert first.ok, first.error
            assert first.counts["members"] == args.servers, first.counts

            def steady_pass() -> None:
                result = run_pass(qd, collector)
                assert result.ok, result.error

            texts = [upstream_conf.read_text()]
            texts.append(texts[0].replace(" down;", ";", 1))
            edits = iter(range(1, 1_000_000))  # each write differs from the last one read

            def collect_after_an_edit() -> None:
                upstream_conf.write_text(texts[next(edits) % 2])
                collector.collect()

            edited_ms = best_ms(collect_after_an_edit, args.repeat)
            upstream_conf.write_text(texts[0])
            bare_ms = best_ms(bare, args.repeat)
            collect_ms = best_ms(collector.collect, args.repeat)
            pass_ms = best_ms(steady_pass, args.repeat)
        finally:
            qd.feed.close()
            qd.store.dispose()
    print(f"nginx, {args.servers} upstream servers, best of {args.repeat}:")
    print(f"  bare stub_status GET + regex of the server lines: {bare_ms:8.1f} ms")
    print(f"  collect (stub_status + the file, nginx's checks): {collect_ms:8.1f} ms")
    print(f"  collect after the file changed (parsed again):    {edited_ms:8.1f} ms")
    print(f"  pass (collect + store, SQLite):                   {pass_ms:8.1f} ms")
    print(f"  first pass (members inserted):                    {first_ms:8.1f} ms")
    ratio = pass_ms / bare_ms
    verdict = "met" if ratio <= GOAL_RATIO else "not met"
    print(f"  pass / bare = {ratio:.1f} (goal <= {GOAL_RATIO}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
