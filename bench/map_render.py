"""The Map page in headless Chromium: how long until the graph is drawn, at fleet scale.

Run: .venv/bin/python bench/map_render.py [--services 2000] [--edges 8000] [--runs 10] [--json]

A fresh SQLite store is seeded through the real store paths (catalog store, span store, span
RED job; tests/map/realistic_map.py) with `--services` services in 40 name-prefix teams and
`--edges` calls between them, each seen in traces (most also declared as Connect upstreams),
3% of services critical and 3% warning. The real server (`app.serving.Server`) serves it;
Debian's Chromium (Playwright, as the browser tests use it) signs in once and then loads each
view `--runs` times:

- focus ±1 and focus ±2 on a busy service (the issue's goal: the focused map drawn ≤ 2 s);
- the whole fleet, which the API groups past `[map] node_limit` (300).

Each load is timed from the navigation's start to the moment map.js has laid the graph out
and painted it (`data-map-drawn-at-ms`, performance.now() at the end of the draw); the
layout alone (dagre + Cytoscape) and one `GET /api/v1/map` of the same view (the server's
share: the page embeds that answer) are reported beside it. p50 / p95 / max per view.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from app.auth.accounts import create_user  # noqa: E402
from app.config import Config, ServerConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.serving import Server  # noqa: E402
from app.store import migrate  # noqa: E402
from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.map.realistic_map import MapFleet, seed_map_fleet  # noqa: E402

PASSWORD = "bench-password-not-secret"
GOAL_MS = 2000


def plan_big_fleet(services: int, edges: int, seed: int = 2000) -> tuple[MapFleet, dict]:
    """Services in 40 teams and five tiers; each call goes to a later tier."""
    rnd = random.Random(seed)
    names = [f"team{n % 40:02d}-svc{n:04d}" for n in range(services)]
    tiers = [names[i::5] for i in range(5)]
    calls: set[tuple[str, str]] = set()
    while len(calls) < edges:
        depth = rnd.randrange(4)
        calls.add((rnd.choice(tiers[depth]), rnd.choice(tiers[rnd.randint(depth + 1, 4)])))
    ordered = sorted(calls)
    rnd.shuffle(ordered)
    tenth = len(ordered) // 10
    fleet = MapFleet(
        services=names,
        declared_only=ordered[:tenth],
        undeclared=ordered[tenth : 2 * tenth],
        observed=ordered[tenth:],
    )
    health = {}
    for name in rnd.sample(names, services * 6 // 100):
        health[name] = "critical" if len(health) % 2 else "warning"
    return fleet, health


def busiest(fleet: MapFleet) -> str:
    """The service with the most observed calls in and out: the worst case for a focus."""
    degree: dict[str, int] = {}
    for a, b in fleet.observed:
        degree[a] = degree.get(a, 0) + 1
        degree[b] = degree.get(b, 0) + 1
    return max(sorted(degree), key=degree.get)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


API_MS_JS = """async (query) => {
  const started = performance.now();
  const response = await fetch('/api/v1/map' + query, {credentials: 'same-origin'});
  await response.json();
  return performance.now() - started;
}"""


def measure(page, url: str, runs: int) -> dict:
    drawn, layout, api, nodes, edges = [], [], [], 0, 0
    query = url[url.index("/map") + 4 :]
    for _ in range(runs):
        page.goto(url)
        page.wait_for_selector("figure[data-map-ready]", timeout=60_000)
        shown = page.evaluate("() => window.QuarterdeckMap.describe()")
        drawn.append(shown["drawn_at_ms"])
        layout.append(shown["layout_ms"])
        nodes, edges = len(shown["nodes"]), len(shown["edges"])
        api.append(page.evaluate(API_MS_JS, query))
    return {
        "nodes": nodes,
        "edges": edges,
        "drawn_ms": {
            "p50": round(statistics.median(drawn)),
            "p95": round(percentile(drawn, 0.95)),
            "max": round(max(drawn)),
        },
        "layout_ms_p50": round(statistics.median(layout)),
        "api_ms_p50": round(statistics.median(api)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--edges", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="qd-map-render-"))
    os.environ.setdefault("QUARTERDECK_SECRET_KEY", "bench-secret-key-not-for-production")
    url = f"sqlite:///{folder / 'quarterdeck.db'}"
    migrate.upgrade(url)
    config = Config(
        store=StoreConfig(url=url), server=ServerConfig(cookie_secure=False, bind="127.0.0.1:0")
    )
    qd = Quarterdeck.from_config(config)
    server = None
    try:
        fleet, health = plan_big_fleet(args.services, args.edges)
        started = time.perf_counter()
        seed_map_fleet(qd, fleet, calls_per_edge=2, health=health)
        seeded_s = time.perf_counter() - started
        with qd.store.session() as db:
            create_user(db, "bench", "viewer", PASSWORD)
        server = Server(create_app(qd=qd), "127.0.0.1", 0, threads=8)
        server.start()
        focus = busiest(fleet)
        views = {
            "focus ±1": f"/map?service={focus}",
            "focus ±2": f"/map?service={focus}&hops=2",
            "whole fleet (grouped)": "/map",
        }
        results = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            page = context.new_page()
            page.goto(f"{server.url}/login")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/")
            for name, path in views.items():
                results[name] = measure(page, server.url + path, args.runs)
            browser.close()
        report = {
            "services": args.services,
            "edges": args.edges,
            "spans": fleet.spans,
            "seeded_s": round(seeded_s, 1),
            "focus": focus,
            "runs": args.runs,
            "load_average": os.getloadavg(),
            "views": results,
            "goal_ms": GOAL_MS,
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(
                f"{args.services} services, {args.edges} edges, {fleet.spans} spans "
                f"(seeded in {seeded_s:.1f} s); load {os.getloadavg()[0]:.1f}"
            )
            for name, r in results.items():
                d = r["drawn_ms"]
                print(
                    f"  {name:24} {r['nodes']:4} nodes {r['edges']:5} edges  drawn p50 "
                    f"{d['p50']} ms  p95 {d['p95']} ms  max {d['max']} ms  "
                    f"(layout p50 {r['layout_ms_p50']} ms, the API alone p50 {r['api_ms_p50']} ms)"
                )
        focused_ok = all(results[v]["drawn_ms"]["p95"] <= GOAL_MS for v in ("focus ±1", "focus ±2"))
        return 0 if focused_ok else 1
    finally:
        if server is not None:
            server.stop()
        qd.feed.close()
        qd.store.dispose()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
