"""Probes: a change in a business endpoint is visible in the API within one probe interval.

Run: .venv/bin/python bench/probes.py [--probes 20] [--interval 5] [--rounds 5] [--json]

A real HTTP endpoint (a threaded http.server on loopback) answers `/health/<n>`; `--probes`
probes of it run in the real scheduler (`CollectionService`) on a fresh SQLite store, each
every `--interval` seconds, and the real server (`app.serving.Server`) answers
`GET /api/v1/probes` with a viewer token. Each round, at a random moment, the endpoint starts
failing (500) or recovers; the API is read every 100 ms until every probe shows the new state.
The delays are from the flip to the last probe showing it (bounded by the interval plus the
probe's own time: the flip waits for the next run) and, the goal, from each result's run to
the API showing it: at most one interval.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.auth.accounts import create_token  # noqa: E402
from app.collection.scheduler import CollectionService  # noqa: E402
from app.config import Config, ProbeConfig, StaticServiceConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.serving import Server  # noqa: E402
from app.store import migrate  # noqa: E402


class Endpoint:
    """A loopback HTTP server whose `/health/*` answers 200 "ok" or 500, as told."""

    def __init__(self) -> None:
        self.failing = False
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                status, body = (500, b"down") if endpoint.failing else (200, b"ok")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bench(probes: int, interval_s: int, rounds: int, workdir: Path) -> dict:
    endpoint = Endpoint()
    url = f"sqlite:///{workdir / 'probes.db'}"
    migrate.upgrade(url)
    configured = tuple(
        ProbeConfig(
            name=f"p{n}", service="orders", url=f"{endpoint.url}/health/{n}",
            interval_s=interval_s, expect_body="ok",
        )
        for n in range(probes)
    )  # fmt: skip
    config = Config(
        store=StoreConfig(url=url),
        static_services=(StaticServiceConfig(name="orders", instances=("127.0.0.1:1",)),),
        probes=configured,
    )
    qd = Quarterdeck.from_config(config)
    with qd.store.session() as db:
        token = create_token(db, "bench", "viewer")
    server = Server(create_app(qd=qd), "127.0.0.1", 0, threads=4)
    server.start()
    collection = CollectionService(qd)
    collection.start()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}

    def read() -> list[dict]:
        return session.get(f"{server.url}/api/v1/probes", headers=auth, timeout=10).json()["probes"]

    # For each flip, the worst probe's age of result when the API first showed all of them:
    # from the run that produced it (its `last.at`) to the moment the API showed it.
    after_run: list[float] = []

    def wait_for(state: str, limit_s: float) -> float | None:
        start = time.monotonic()
        seen_at: dict[str, float] = {}
        while time.monotonic() - start < limit_s:
            now = time.time()
            for probe in read():
                if probe["state"] == state and probe["name"] not in seen_at and probe["last"]:
                    ran_at = datetime.fromisoformat(probe["last"]["at"]).timestamp()
                    seen_at[probe["name"]] = now - ran_at
            if len(seen_at) == probes:
                after_run.append(max(seen_at.values()))
                return time.monotonic() - start
            time.sleep(0.1)
        return None

    delays: list[float | None] = []
    try:
        first = wait_for("passing", 3 * interval_s)
        for n in range(rounds):
            time.sleep(random.uniform(0, interval_s))
            endpoint.failing = n % 2 == 0
            delays.append(wait_for("failing" if endpoint.failing else "passing", 3 * interval_s))
    finally:
        collection.stop()
        server.stop()
        endpoint.close()
        qd.store.dispose()
    worst = None if None in delays else max(delays)
    worst_after_run = max(after_run[1:], default=None)  # [0] is the first result of all
    return {
        "probes": probes,
        "interval_s": interval_s,
        "first_result_s": None if first is None else round(first, 2),
        "delays_s": [None if d is None else round(d, 2) for d in delays],
        "worst_s": None if worst is None else round(worst, 2),
        "after_run_s": [round(a, 2) for a in after_run[1:]],
        "worst_after_run_s": None if worst_after_run is None else round(worst_after_run, 2),
        # A result must show within one interval of its run; a flip then shows within the
        # interval plus the probe's own time, since it waits for the next run.
        "goal_met": worst is not None
        and worst_after_run is not None
        and worst_after_run <= interval_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = bench(args.probes, args.interval, args.rounds, Path(workdir))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{results['probes']} probes every {results['interval_s']} s")
        print(f"  first results of all of them after {results['first_result_s']} s")
        print(f"  a flip visible after {results['delays_s']} s; worst {results['worst_s']} s")
        print("    (the next run comes up to one interval after the flip, then the probe runs)")
        print(
            f"  each result visible after its run: {results['after_run_s']} s; "
            f"worst {results['worst_after_run_s']} s"
        )
        verdict = "met" if results["goal_met"] else "NOT met"
        print(f"  goal (a result visible within one interval of its run): {verdict}")
    return 0 if results["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
