"""`quarterdeck demo` end to end: the fleet's own OpenTelemetry exporters fill the demo's store.

Nothing is seeded: the demo's fleet sends its spans to the demo's own `POST /v1/traces`; the
store (read here straight from its SQLite file, as another reader would) holds whole traces
from the traffic generator through gateway, orders, inventory and payments, and the dependency
map the API serves draws those calls as edges with trace evidence.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = {"traffic", "gateway", "orders", "inventory", "payments"}


def whole_checkouts(database: Path) -> list[str]:
    """Return the ids of stored traces that have spans from every service of a checkout."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute("SELECT trace_id, service FROM spans").fetchall()
    services: dict[str, set[str]] = {}
    for trace_id, service in rows:
        services.setdefault(trace_id, set()).add(service)
    return [trace_id for trace_id, seen in services.items() if seen >= CHECKOUT]


def export_nothing(port: int) -> int:
    """POST an empty protobuf export without a token; return the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST", "/v1/traces", body=b"", headers={"Content-Type": "application/x-protobuf"}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def api_token(config_path: Path, env: dict[str, str]) -> str:
    """Create a viewer API token with the CLI, pointed at the demo's own config."""
    created = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", "create", "e2e", "--role", "viewer"],
        env={**env, "QUARTERDECK_CONFIG": str(config_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip()


def trace_edges(port: int, token: str) -> set[tuple[str, str]]:
    """GET /api/v1/map; return its edges that have trace evidence."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/api/v1/map", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200, body
    return {(e["source"], e["target"]) for e in body["edges"] if "traces" in e["evidence"]}


@pytest.mark.parametrize("token", ["", "demo-ingest-token"], ids=["open", "with-token"])
def test_the_demo_stores_traces_its_fleet_sent_across_every_service(tmp_path, token):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
    env["PYTHONPATH"] = str(ROOT)
    if token:
        # Ingest then refuses exports without it (tests/otlp): the fleet must send it.
        env["QUARTERDECK_OTLP_TOKEN"] = token
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--bind", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        printed = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("QUARTERDECK_CONFIG=" in p for p in printed):
            printed.append(demo.stdout.readline())
        text = "".join(printed)
        assert f"sends its traces (OTLP/HTTP) to http://127.0.0.1:{port}/v1/traces" in text
        config_path = Path(re.search(r"QUARTERDECK_CONFIG=(\S+)", text).group(1))
        database = config_path.parent / "quarterdeck-demo.db"
        found = wait_for(lambda: whole_checkouts(database), "a whole checkout trace stored", 120)
        if token:
            # The ingest really wanted the token: an export without it is refused.
            assert export_nothing(port) == 401
        else:
            # The map fills from the same spans (rolled up by its job every 15 s).
            viewer = api_token(config_path, env)
            wanted = {("gateway", "orders"), ("orders", "inventory"), ("orders", "payments")}
            wait_for(lambda: wanted <= trace_edges(port, viewer), "the map's trace edges", 90)
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            spans = db.execute(
                "SELECT span_id, parent_span_id, service, instance, kind, name FROM spans"
                " WHERE trace_id = ?",
                (found[0],),
            ).fetchall()
            summary = db.execute(
                "SELECT root_service, root_operation, span_count FROM traces WHERE trace_id = ?",
                (found[0],),
            ).fetchone()
    except BaseException:
        demo.kill()
        demo.communicate()
        raise
    demo.send_signal(signal.SIGTERM)
    demo.communicate(timeout=60)
    assert demo.returncode == 0
    by_id = {span_id: (service, kind) for span_id, _, service, _, kind, _ in spans}
    # One root (the traffic generator's request); every other span's parent is in the trace,
    # and each service's SERVER span is the child of its caller's CLIENT span.
    roots = [s for s in spans if not s[1]]
    assert [(r[2], r[4]) for r in roots] == [("traffic", 3)]
    for _, parent, _service, _, kind, _ in spans:
        if parent:
            assert parent in by_id
            if kind == 2:  # SERVER
                assert by_id[parent][1] == 3, by_id[parent]  # CLIENT
    edges = {(by_id[p][0], s) for _, p, s, _, k, _ in spans if p and by_id[p][0] != s}
    assert {("traffic", "gateway"), ("gateway", "orders")} <= edges
    assert {("orders", "inventory"), ("orders", "payments")} <= edges
    assert all(instance.startswith(f"{service}-") for _, _, service, instance, _, _ in spans)
    assert summary[0] == "traffic" and summary[2] == len(spans)
