"""Live streams vs the API: hold 1,000 open `/events` streams and time the API meanwhile.

Starts `quarterdeck serve` in a child process (so the client's work is not the server's) on a
fresh SQLite store, with a Consul double in this process seeded with a small fleet, and one
viewer token whose stream cap is raised by config. Then:

1. API latency with no stream open: `/healthz` and `/api/v1/services`, p50/p95 of N requests,
   one new connection each (as a load balancer's probe or a script would).
2. Opens the streams (all requests sent first, then the answers read) and times it.
3. After --settle seconds, the same API latency while every stream is open; the goal is
   p95 <= 100 ms.
4. Flips one Consul check and times until each open stream has the `change` event.

Run: .venv/bin/python bench/streams.py [--streams 1000] [--requests 200] [--json]
     .venv/bin/python bench/streams.py --baseline REV   # serve a `git archive` of REV instead
The baseline mode serves an older commit with this checkout's .venv (for the waitress server
that was replaced, `pip install waitress` first). A request that gets no answer within
--timeout seconds counts as infinitely slow; after 5 of those an endpoint is given up.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo.consul import ConsulDouble  # noqa: E402
from demo.fleet_seed import seed_scale  # noqa: E402

GOAL_P95_MS = 100.0
GIVE_UP_AFTER = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="per endpoint and phase")
    parser.add_argument("--services", type=int, default=100, help="services in the Consul double")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per API request")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds between opening and measuring"
    )
    parser.add_argument("--baseline", metavar="REV", help="serve this commit instead")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    _raise_open_files(args.streams + 200)
    with tempfile.TemporaryDirectory(prefix="qd-bench-streams-") as tmp:
        results = run(args, Path(tmp))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 0


def run(args, tmp: Path) -> dict:
    code = _checkout(args.baseline, tmp) if args.baseline else ROOT
    consul = ConsulDouble()
    names = seed_scale(consul, services=args.services, instances_per_service=5, nodes=10)
    consul.start()
    port = _free_port()
    config = tmp / "quarterdeck.toml"
    server_keys = f'bind = "127.0.0.1:{port}"\ncookie_secure = false\n'
    if not args.baseline:
        server_keys += (
            f"streams_per_user = {args.streams + 10}\nmax_streams = {args.streams + 100}\n"
        )
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp / "bench.db"}"\n[server]\n{server_keys}'
        f'[consul]\nurl = "{consul.url}"\ntoken_env = "QD_BENCH_NO_TOKEN"\n'
    )
    env = {**os.environ, "QUARTERDECK_CONFIG": str(config), "QUARTERDECK_SECRET_KEY": "bench"}
    env["PYTHONPATH"] = str(code)
    cli = [sys.executable, "-m", "app.cli"]
    subprocess.run([*cli, "db", "upgrade"], cwd=tmp, env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*cli, "token", "create", "bench", "--role", "viewer"],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    server = subprocess.Popen(
        [*cli, "serve"], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    results: dict = {
        "server": f"git archive of {args.baseline}" if args.baseline else "this checkout",
        "streams_wanted": args.streams,
        "services": args.services,
    }
    streams: list[socket.socket] = []
    try:
        _wait_for(port, server)
        _wait_for_services(port, token, args.services)
        auth = {"Authorization": f"Bearer {token}"}
        results["idle"] = _latencies(port, auth, args.requests, args.timeout)
        started = time.perf_counter()
        streams, opened = _open_streams(port, token, args.streams, deadline_s=60)
        results["opened"] = opened
        results["open_s"] = round(time.perf_counter() - started, 2)
        results["rss_mb"] = _rss_mb(server.pid)
        time.sleep(args.settle)
        results["with_streams"] = _latencies(port, auth, args.requests, args.timeout)
        results["fan_out"] = _fan_out(consul, names[0], streams, opened)
    finally:
        for sock in streams:
            sock.close()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        consul.stop()
    return results


def _checkout(rev: str, tmp: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    target = tmp / "baseline"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _latencies(port: int, auth: dict, n: int, timeout: float) -> dict:
    return {
        "/healthz": _time_requests(port, "/healthz", {}, n, timeout),
        "/api/v1/services": _time_requests(port, "/api/v1/services", auth, n, timeout),
    }


def _time_requests(port: int, path: str, headers: dict, n: int, timeout: float) -> dict:
    times: list[float] = []
    failed = 0
    for _ in range(n):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        started = time.perf_counter()
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except OSError:
            ok = False
        finally:
            connection.close()
        times.append((time.perf_counter() - started) * 1000 if ok else math.inf)
        failed += not ok
        if failed >= GIVE_UP_AFTER:
            break
    return {
        "requests": len(times),
        "failed": failed,
        "p50_ms": _percentile(times, 50),
        "p95_ms": _percentile(times, 95),
    }


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)], 2)


def _open_streams(port: int, token: str, n: int, deadline_s: float):
    """Send every stream request, then read the answers; return the sockets and how many opened."""
    request = (
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    socks = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        socks.append(sock)
    selector = selectors.DefaultSelector()
    seen = {sock: b"" for sock in socks}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    opened = 0
    deadline = time.monotonic() + deadline_s
    while opened + _failed(seen) < n and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            data = sock.recv(65536)
            seen[sock] += data
            if b": connected" in seen[sock] or not data or b" 200 " not in seen[sock][:16]:
                selector.unregister(sock)
                opened += b": connected" in seen[sock]
    selector.close()
    for sock in socks:
        sock.setblocking(True)
    return socks, opened


def _failed(seen: dict) -> int:
    return sum(1 for data in seen.values() if data and b" 200 " not in data[:16])


def _fan_out(consul, service: str, socks: list[socket.socket], opened: int) -> dict:
    """Flip a check and time until each open stream has heard of it."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        try:
            while sock.recv(65536):
                pass  # drop what came before (keep-alives)
        except BlockingIOError:
            pass
        selector.register(sock, selectors.EVENT_READ)
    arrived: list[float] = []
    done: set = set()
    started = time.perf_counter()
    consul.set_check(f"service:{service}-0", "critical", "bench: flipped")
    deadline = time.monotonic() + 30
    while len(done) < opened and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            if sock in done:
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if b"event: change" in data:
                arrived.append((time.perf_counter() - started) * 1000)
                done.add(sock)
                selector.unregister(sock)
    selector.close()
    arrived += [math.inf] * (opened - len(arrived))
    return {
        "streams": opened,
        "heard": len(done),
        "first_ms": _percentile(arrived, 0) if arrived else None,
        "p50_ms": _percentile(arrived, 50) if arrived else None,
        "p95_ms": _percentile(arrived, 95) if arrived else None,
        "last_ms": _percentile(arrived, 100) if arrived else None,
    }


def _wait_for(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /healthz in time")


def _wait_for_services(port: int, token: str, services: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/v1/services", headers={"Authorization": f"Bearer {token}"})
        body = json.loads(connection.getresponse().read())
        if len(body.get("services", [])) >= services:
            return
        time.sleep(0.5)
    raise SystemExit("the services did not reach the API in time")


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        if limit < wanted:
            print(f"warning: only {limit} open files allowed (ulimit -Hn)", file=sys.stderr)


def report(r: dict) -> None:
    print(f"server: {r['server']}; {r['services']} services in the Consul double")
    for phase, label in (("idle", "no stream open"), ("with_streams", f"{r['opened']} open")):
        for path, f in r[phase].items():
            verdict = ""
            if phase == "with_streams":
                ratio = f["p95_ms"] / GOAL_P95_MS
                verdict = f"  p95/goal {ratio:.2f} ({'met' if ratio <= 1 else 'MISSED'})"
            failed = f", {f['failed']} failed" if f["failed"] else ""
            print(
                f"{label:>16}  {path:<18} p50 {f['p50_ms']:>8} ms  p95 {f['p95_ms']:>8} ms"
                f"  ({f['requests']} requests{failed}){verdict}"
            )
    print(
        f"streams: {r['opened']} of {r['streams_wanted']} opened in {r['open_s']} s; "
        f"server RSS {r['rss_mb']} MB"
    )
    f = r["fan_out"]
    print(
        f"check flip -> change event: {f['heard']} of {f['streams']} streams; first "
        f"{f['first_ms']} ms, p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, last {f['last_ms']} ms"
    )


if __name__ == "__main__":
    raise SystemExit(main())
