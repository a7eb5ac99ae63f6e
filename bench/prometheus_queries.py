"""Prometheus requests per collection pass at 10 and at 1,000 services (goal: the same count).

For each fleet size a real `prometheus` (own temp dir, free port, 2 s scrapes) scrapes a real
prometheus_client endpoint exposing the OTel histogram `http_server_request_duration_seconds`
(`service`, `http_route`, `http_response_status_code`, counters growing with time) and the push
gauge for every service. Once the collector sees every service, passes of PrometheusCollector
are timed and their HTTP requests counted at the requests.Session it uses.

Run: .venv/bin/python bench/prometheus_queries.py [--sizes 10,1000] [--repeats 5]
Prints one line per size and the ratio of the request counts (goal 1.00). docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from prometheus_client import CollectorRegistry, start_http_server  # noqa: E402
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily  # noqa: E402

from app.config import PrometheusConfig  # noqa: E402
from app.models import utcnow  # noqa: E402
from collectors.metrics import RedUpdate  # noqa: E402
from collectors.prometheus import PrometheusCollector, PrometheusReader  # noqa: E402

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CountingSession(requests.Session):
    """A requests session that counts the HTTP requests sent through it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def request(self, *args, **kwargs):
        self.sent += 1
        return super().request(*args, **kwargs)


class SteadyFleet:
    """Metrics of `n` services whose counters grow at a steady rate (20 rps, 5 % errors)."""

    def __init__(self, n: int) -> None:
        self.services = [f"svc-{i:04d}" for i in range(n)]
        self.started = time.monotonic()

    def collect(self):
        elapsed = time.monotonic() - self.started
        ok, failed = int(elapsed * 19), int(elapsed * 1)
        histogram = HistogramMetricFamily(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            labels=["service", "http_route", "http_response_status_code"],
        )
        gauge = GaugeMetricFamily(
            "push_connections_active", "Open push connections.", labels=["service", "instance"]
        )
        for service in self.services:
            for status, count, seconds in (("200", ok, 0.02), ("500", failed, 0.4)):
                buckets = [(str(b), count if seconds <= b else 0) for b in BUCKETS]
                buckets.append(("+Inf", count))
                histogram.add_metric([service, "/api", status], buckets, count * seconds)
            gauge.add_metric([service, f"{service}-1"], 10)
        yield histogram
        yield gauge


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_prometheus(workdir: Path, target: str) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus")
    if binary is None:
        sys.exit("prometheus is not installed (Debian package 'prometheus')")
    config = workdir / "prometheus.yml"
    config.write_text(
        '{"global": {"scrape_interval": "2s", "scrape_timeout": "2s"}, "scrape_configs": '
        f'[{{"job_name": "fleet", "static_configs": [{{"targets": ["{target}"]}}]}}]}}'
    )
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    process.kill()
    sys.exit(f"Prometheus did not start; see {workdir / 'prometheus.log'}")


def measure(n: int, repeats: int) -> dict:
    registry = CollectorRegistry()
    registry.register(SteadyFleet(n))
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    workdir = Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
    process, url = start_prometheus(workdir, f"127.0.0.1:{httpd.server_port}")
    try:
        session = CountingSession()
        config = PrometheusConfig(url=url, window="20s")
        collector = PrometheusCollector.from_config(config, clock=utcnow)
        collector.reader = PrometheusReader(url, config.timeout_s, session=session)
        deadline = time.monotonic() + 120
        while True:
            red = next(r for r in collector.collect() if isinstance(r, RedUpdate))
            if sum(1 for s in red.services if s.rate_rps) == n:
                break
            if time.monotonic() > deadline:
                active = collector.reader.api("targets?state=active")["activeTargets"]
                health = [(t["health"], t["lastError"]) for t in active]
                sys.exit(f"Prometheus did not show {n} services within 120 s (targets: {health})")
            time.sleep(1)
        counts, times = [], []
        for _ in range(repeats):
            session.sent = 0
            start = time.perf_counter()
            collector.collect()
            times.append(time.perf_counter() - start)
            counts.append(session.sent)
        return {
            "services": n,
            "requests_per_pass": max(counts),
            "constant": len(set(counts)) == 1,
            "pass_ms_median": statistics.median(times) * 1000,
            "pass_ms_max": max(times) * 1000,
        }
    finally:
        process.terminate()
        process.wait(timeout=10)
        httpd.shutdown()
        httpd.server_close()
        thread.join()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = [measure(int(size), args.repeats) for size in args.sizes.split(",")]
    for r in results:
        print(
            f"services={r['services']:>5}  requests/pass={r['requests_per_pass']}"
            f" (same every pass: {r['constant']})  pass median={r['pass_ms_median']:.0f} ms"
            f"  max={r['pass_ms_max']:.0f} ms"
        )
    first, last = results[0], results[-1]
    ratio = last["requests_per_pass"] / first["requests_per_pass"]
    print(
        f"requests per pass at {last['services']} vs {first['services']} services: "
        f"{last['requests_per_pass']} / {first['requests_per_pass']} = {ratio:.2f} (goal 1.00)"
    )


if __name__ == "__main__":
    main()
