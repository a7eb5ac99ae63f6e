"""OTLP ingest throughput: spans/s over HTTP into the store, and the ratio to a bare executemany.

The sender posts pre-encoded protobuf exports (what the OpenTelemetry SDK's exporter sends) of
`--batch` spans each, one after another on one keep-alive connection, to the real server
(`app.serving.Server`, as `quarterdeck serve` runs it) in this process: decode, validate,
bound, write and commit, all under one interpreter lock, i.e. one core's worth of Python.
The bare baseline inserts the same span rows with the driver's executemany (JSON columns
serialised with json.dumps), with no trace summaries, no dedup and no HTTP.

Run: .venv/bin/python bench/otlp_ingest.py [--spans 200000] [--batch 512] [--postgres URL]
Without --postgres it starts a throw-away PostgreSQL cluster like the tests do.
Goals: ratio >= 0.3 on both stores; >= 30,000 spans/s on SQLite.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from app.config import Config, ServerConfig, StoreConfig  # noqa: E402
from app.context import Quarterdeck  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.serving import Server  # noqa: E402
from app.store import migrate  # noqa: E402
from app.store.traces import SPAN_COLUMNS  # noqa: E402
from collectors.otlp import decode_protobuf  # noqa: E402

T0 = 1_764_000_000_000_000_000
SERVICES = ("gateway", "orders", "payments", "inventory")
SPANS_PER_TRACE = 8


def exports(n_spans: int, batch: int) -> list[bytes]:
    """Encoded ExportTraceServiceRequests, like an SDK's: one resource per service."""
    bodies = []
    for first in range(0, n_spans, batch):
        request = ExportTraceServiceRequest()
        by_service = {}
        for n in range(first, min(first + batch, n_spans)):
            service = SERVICES[(n // 2) % len(SERVICES)]
            if service not in by_service:
                resource_spans = request.resource_spans.add()
                for key, value in (
                    ("service.name", service),
                    ("service.instance.id", f"{service}-1"),
                    ("telemetry.sdk.language", "python"),
                    ("telemetry.sdk.name", "opentelemetry"),
                    ("telemetry.sdk.version", "1.45.2"),
                ):
                    kv = resource_spans.resource.attributes.add()
                    kv.key, kv.value.string_value = key, value
                by_service[service] = resource_spans.scope_spans.add()
            trace, index = divmod(n, SPANS_PER_TRACE)
            span = by_service[service].spans.add()
            span.trace_id = (trace + 1).to_bytes(16, "big")
            span.span_id = (n + 1).to_bytes(8, "big")
            if index:
                span.parent_span_id = (trace * SPANS_PER_TRACE + 1).to_bytes(8, "big")
            span.name = f"GET /api/{index}"
            span.kind = 2 if index % 2 == 0 else 3
            span.start_time_unix_nano = T0 + n * 1_000_000
            span.end_time_unix_nano = T0 + n * 1_000_000 + 250_000 * (index + 1)
            span.status.code = 2 if n % 97 == 0 else 0
            for key, value in (
                ("http.request.method", "GET"),
                ("http.route", f"/api/{index}"),
                ("url.path", f"/api/{index}?page={n % 10}"),
                ("server.address", "10.0.0.7"),
            ):
                kv = span.attributes.add()
                kv.key, kv.value.string_value = key, value
            kv = span.attributes.add()
            kv.key, kv.value.int_value = "http.response.status_code", 200
        bodies.append(request.SerializeToString())
    return bodies


def send_all(url: str, bodies: list[bytes]) -> float:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    start = time.perf_counter()
    for body in bodies:
        connection.request(
            "POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"}
        )
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SystemExit(f"export refused: {response.status} {answer[:200]!r}")
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed


def ingest(url: str, bodies: list[bytes]) -> float:
    """Seconds to post every export to a fresh server on the store at `url`."""
    migrate.upgrade(url)
    config = Config(
        store=StoreConfig(url=url), server=ServerConfig(cookie_secure=False, bind="127.0.0.1:0")
    )
    qd = Quarterdeck.from_config(config)
    server = Server(create_app(qd=qd), "127.0.0.1", 0, threads=4).start()
    try:
        return send_all(server.url, bodies)
    finally:
        server.stop()
        qd.store.dispose()


def bare(url: str, bodies: list[bytes]) -> float:
    """Seconds to executemany the same span rows, one transaction per export."""
    migrate.upgrade(url)
    batches = []
    for body in bodies:
        rows = []
        for s in decode_protobuf(body).spans:
            row = [getattr(s, c) for c in SPAN_COLUMNS]
            row[SPAN_COLUMNS.index("attributes")] = json.dumps(s.attributes)
            row[SPAN_COLUMNS.index("events")] = json.dumps(list(s.events))
            rows.append((*row, T0))
        batches.append(rows)
    columns = ", ".join((*SPAN_COLUMNS, "received_ns"))
    qd = Quarterdeck.from_config(Config(store=StoreConfig(url=url)))
    raw = qd.store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        mark = "?" if qd.store.dialect == "sqlite" else "%s"
        sql = (
            f"INSERT INTO spans ({columns}) VALUES ({', '.join([mark] * (len(SPAN_COLUMNS) + 1))})"
        )
        start = time.perf_counter()
        for rows in batches:
            if qd.store.dialect == "sqlite":
                cursor.execute("BEGIN")
            cursor.executemany(sql, rows)
            raw.commit() if qd.store.dialect != "sqlite" else cursor.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        raw.close()
        qd.store.dispose()


def run(fresh_url, label: str, bodies: list[bytes], n_spans: int, repeat: int) -> dict:
    ours = min(ingest(fresh_url(), bodies) for _ in range(repeat))
    baseline = min(bare(fresh_url(), bodies) for _ in range(repeat))
    result = {
        "store": label,
        "spans": n_spans,
        "spans_s": round(n_spans / ours),
        "bare_spans_s": round(n_spans / baseline),
        "ratio": round(baseline / ours, 2),
    }
    print(
        f"{label:<10} {result['spans_s']:>7} spans/s over HTTP, ratio {result['ratio']} to bare "
        f"executemany ({result['bare_spans_s']} spans/s; goals: ratio >= 0.3"
        f"{', >= 30,000 spans/s' if label == 'sqlite' else ''})"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the best is kept")
    parser.add_argument("--postgres", help="URL of a PostgreSQL server's admin database")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    bodies = exports(args.spans, args.batch)
    gc.freeze()  # as `quarterdeck serve` does once started
    print(f"load average {os.getloadavg()[0]:.2f}; {len(bodies)} exports of {args.batch} spans")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))
        if args.only != "postgresql":
            sqlite_url = lambda: f"sqlite:///{tmp}/bench-{next(counter)}.db"  # noqa: E731
            results.append(run(sqlite_url, "sqlite", bodies, args.spans, args.repeat))
        if args.only != "sqlite":
            from tests.fixtures.postgres import PostgresServer, running_postgres

            if args.postgres:
                from sqlalchemy.engine import make_url

                server = PostgresServer(make_url(args.postgres))
                results.append(
                    run(server.create_database, "postgresql", bodies, args.spans, args.repeat)
                )
                server.drop_created_databases()
            else:
                workdir = Path(tmp) / "pg"
                workdir.mkdir()
                Path(tmp).chmod(0o755)  # the unprivileged PostgreSQL user must reach its folder
                with running_postgres(workdir) as base:
                    server = PostgresServer(base)
                    results.append(
                        run(server.create_database, "postgresql", bodies, args.spans, args.repeat)
                    )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
