"""A fleet whose map looks like a real one: ~45 services in five tiers, calls seen in traces,
Connect upstreams declared in the catalog, drift both ways, every health state, long and
hostile names. Written through the real store paths (catalog store, span store, span RED job).

Used by the Map page's browser tests (and their screenshots) and by bench/map_render.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.context import Quarterdeck
from app.store.catalog import apply_catalog_update
from app.store.span_red import LAG_NS, roll_up_spans
from app.store.traces import write_spans
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord
from collectors.spans import SpanRecord

HOSTILE = "<img src=x onerror=window.__pwned=1>"
SCRIPT = "<script>window.__pwned=1</script>"

TIERS = (
    ("web-gateway", "mobile-bff", "partner-api", "admin-console"),
    (
        "orders", "checkout", "cart", "catalog", "search", "users", "auth", "pricing",
        "recommendations", "reviews",
    ),
    (
        "payments", "inventory", "shipping", "notifications", "fraud-check", "tax-service",
        "loyalty", "media-resizer", "customer-notification-preferences-api", "feature-flags",
        "geo-lookup",
    ),
    (
        "ledger", "email-sender", "sms-gateway", "warehouse-sync", "carrier-adapter-dhl",
        "carrier-adapter-ups", "search-indexer-worker", "audit-log", "session-store",
    ),
    ("postgres-orders", "postgres-users", "redis-cart", "kafka-events", "elasticsearch"),
)  # fmt: skip

# Health other than passing, so the map shows every state.
HEALTH = {
    "payments": "critical",
    "search-indexer-worker": "warning",
    "customer-notification-preferences-api": "warning",
    "loyalty": "maintenance",
    "carrier-adapter-ups": "critical",
}
# Calls that fail often (error ratio), and slow ones (p95).
FAILING = {
    ("checkout", "payments"): 0.35,
    ("payments", "ledger"): 0.2,
    ("shipping", "carrier-adapter-ups"): 0.6,
}
SLOW = {("search", "elasticsearch"): 900.0, ("checkout", "payments"): 1400.0}


@dataclass
class MapFleet:
    """What was seeded: the services, the observed calls and the declared-only ones."""

    services: list[str] = field(default_factory=list)
    observed: list[tuple[str, str]] = field(default_factory=list)
    declared_only: list[tuple[str, str]] = field(default_factory=list)
    undeclared: list[tuple[str, str]] = field(default_factory=list)
    spans: int = 0


def plan_fleet(seed: int = 8, hostile: bool = True) -> MapFleet:
    """Decide the services and their calls: callers in one tier call the next ones."""
    rnd = random.Random(seed)
    tiers = [list(t) for t in TIERS]
    if hostile:
        tiers[2].append(HOSTILE)
        tiers[3].append(SCRIPT)
    fleet = MapFleet(services=[s for tier in tiers for s in tier])
    calls: set[tuple[str, str]] = set()
    for depth, tier in enumerate(tiers[:-1]):
        for caller in tier:
            for _ in range(rnd.randint(1, 3)):
                hop = min(len(tiers) - 1, depth + rnd.choice((1, 1, 1, 2)))
                calls.add((caller, rnd.choice(tiers[hop])))
    if hostile:
        calls |= {("orders", HOSTILE), (HOSTILE, SCRIPT), ("checkout", "payments")}
    calls |= set(FAILING) | set(SLOW)
    # The failing and slow calls are observed and declared: the tests look for their figures.
    ordered = sorted(calls - set(FAILING) - set(SLOW))
    rnd.shuffle(ordered)
    ordered += sorted(set(FAILING) | set(SLOW))
    # A few declared upstreams nobody calls, a few calls nobody declared.
    fleet.declared_only = ordered[:5]
    fleet.undeclared = ordered[5:9]
    fleet.observed = ordered[5:]
    return fleet


def _service_record(name: str, upstreams: Iterable[str], health: str) -> ServiceRecord:
    if health == "maintenance":
        checks = (
            CheckRecord("_service_maintenance", "maintenance", "critical", kind="maintenance"),
        )
    else:
        checks = (CheckRecord(f"check-{name}", "http", health, output=f"GET /health: {health}"),)
    instances = tuple(
        InstanceRecord(
            id=f"{name}-{n}", node=f"node-{n}", address=f"10.0.{n}.1", port=8080, checks=checks
        )
        for n in (1, 2)
    )
    return ServiceRecord(name=name, instances=instances, upstreams=tuple(sorted(upstreams)))


def seed_map_fleet(
    qd: Quarterdeck,
    fleet: MapFleet,
    *,
    calls_per_edge: int = 40,
    health: dict[str, str] | None = None,
) -> MapFleet:
    """Write the catalog, the traces of the observed calls, and roll the spans up."""
    health = HEALTH if health is None else health
    declared: dict[str, set[str]] = {s: set() for s in fleet.services}
    for caller, callee in fleet.declared_only + [
        c for c in fleet.observed if c not in fleet.undeclared
    ]:
        declared[caller].add(callee)
    services = tuple(
        _service_record(s, declared[s], health.get(s, "passing")) for s in fleet.services
    )
    with qd.store.session(write=True) as db:
        apply_catalog_update(db, "consul", CatalogUpdate(qd.clock(), services))
    rnd = random.Random(len(fleet.services))
    start = datetime.now(UTC) - timedelta(minutes=10)
    base_ns = int(start.timestamp() * 1e9)
    spans: list[SpanRecord] = []
    trace = 0
    for caller, callee in fleet.observed:
        failing = FAILING.get((caller, callee), 0.002)
        slow = SLOW.get((caller, callee), rnd.choice((8.0, 15.0, 30.0, 60.0)))
        for _ in range(rnd.randint(calls_per_edge // 2, calls_per_edge * 3)):
            trace += 1
            at = base_ns + rnd.randrange(0, 9 * 60 * 10**9)
            child_ms = rnd.uniform(0.3, 1.0) * slow
            parent = SpanRecord(
                trace_id=f"{trace:032x}", span_id=f"{2 * trace:016x}", parent_span_id="",
                service=caller, name=f"GET /{callee}", start_ns=at,
                duration_ns=int((child_ms + 2) * 1e6), kind=2,
            )  # fmt: skip
            child = SpanRecord(
                trace_id=f"{trace:032x}", span_id=f"{2 * trace + 1:016x}",
                parent_span_id=parent.span_id, service=callee, name="handle",
                start_ns=at + 1_000_000, duration_ns=int(child_ms * 1e6), kind=2,
                status_code=2 if rnd.random() < failing else 0,
            )  # fmt: skip
            spans += (parent, child)
    with qd.store.engine.begin() as connection:
        for chunk in range(0, len(spans), 5000):
            write_spans(connection, spans[chunk : chunk + 5000])
    fleet.spans = len(spans)
    upto = time.time_ns() + LAG_NS
    while True:
        with qd.store.session(write=True) as db:
            run = roll_up_spans(db, qd.clock(), now_ns=upto)
        if not run.spans:
            break
    return fleet
