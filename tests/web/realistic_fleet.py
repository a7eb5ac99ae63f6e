"""A fleet that looks like a real one on the pages: the demo mesh plus long names, long ids,
many tags and every health state, served by the Consul double and a static source."""

from __future__ import annotations

import time

from sqlalchemy import select

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import ConsulConfig, StaticServiceConfig
from app.models import Instance
from demo.consul import ConsulDouble
from demo.fleet_seed import seed_demo_fleet

# Kubernetes-style names: what makes a row too wide on a phone.
LONG_SERVICE = "customer-notification-preferences-api"
LONG_NODE = "ip-10-42-187-23.eu-west-1.compute.internal"
LONG_IDS = tuple(f"{LONG_SERVICE}-7f9c2b6d8-{suffix}" for suffix in ("xk4pq", "m2v9z", "q8r7t"))
MANY_TAGS = (
    "http",
    "grpc",
    "team-customer-experience",
    "tier-1",
    "pci-scope",
    "region-eu-west-1",
    "canary-eligible",
    "otel-instrumented",
    "cost-centre-4711",
    "on-call-rotation-cx",
)
WARNING_SERVICE = "search-indexer-worker"
MAINTENANCE_SERVICE = "ledger-reconciliation-batch"
# A static source has no health checks: its services are "unknown".
UNKNOWN_SERVICE = "legacy-billing-exporter-eu-central"
STATIC_SERVICES = (
    StaticServiceConfig(
        name=UNKNOWN_SERVICE,
        instances=("10.20.30.40:9100", "10.20.30.41:9100"),
        tags=("legacy", "exporter", "team-billing"),
    ),
)


def seed_realistic_fleet(consul: ConsulDouble) -> None:
    """Register the demo mesh and a few services with long names, tags and failing checks."""
    seed_demo_fleet(consul)
    with consul.batch():
        consul.register_node(LONG_NODE, "10.42.187.23", {"availability-zone": "eu-west-1a"})
        for number, service_id in enumerate(LONG_IDS):
            status = "critical" if number == 0 else "passing"
            output = (
                "HTTP GET http://10.42.187.23:8443/healthz/ready: 503 Service Unavailable Output: "
                '{"status":"unavailable","checks":{"postgres-primary":'
                '"connection pool exhausted (64/64)","kafka":"ok"}}'
                if status == "critical"
                else "HTTP GET http://10.42.187.23:8443/healthz/ready: 200 OK"
            )
            consul.register_service(
                LONG_NODE,
                service_id,
                LONG_SERVICE,
                address="10.42.187.23",
                port=8443 + number,
                tags=MANY_TAGS,
                meta={"version": "2026.11.3-rc.2+build.8812", "owner": "team-customer-experience"},
                checks=[
                    {
                        "CheckID": f"service:{service_id}",
                        "Name": f"Service '{LONG_SERVICE}' readiness",
                        "Status": status,
                        "Output": output,
                        "Type": "http",
                    }
                ],
            )
        for number in range(1, 4):
            service_id = f"{WARNING_SERVICE}-{number}"
            consul.register_service(
                "node-b",
                service_id,
                WARNING_SERVICE,
                address="127.0.0.1",
                port=18300 + number,
                tags=("worker", "kafka-consumer", "team-search"),
                meta={"version": "5.2.0"},
                checks=[
                    {
                        "CheckID": f"service:{service_id}",
                        "Name": "consumer lag",
                        "Status": "warning" if number == 2 else "passing",
                        "Output": "lag 48211 messages on partition 7 (threshold 10000)",
                        "Type": "script",
                    }
                ],
            )
        consul.register_service(
            "node-c",
            f"{MAINTENANCE_SERVICE}-1",
            MAINTENANCE_SERVICE,
            address="127.0.0.1",
            port=18400,
            tags=("batch", "team-finance"),
            meta={"version": "1.4.0"},
            checks=[{"CheckID": f"service:{MAINTENANCE_SERVICE}-1", "Name": "alive"}],
        )
        consul.enable_service_maintenance(
            f"{MAINTENANCE_SERVICE}-1", reason="month-end close: paused by finance on-call"
        )


def fleet_sections(consul: ConsulDouble) -> dict:
    """The config sections that point Quarterdeck at this fleet."""
    return {
        "consul": ConsulConfig(url=consul.url, token_env="", wait_s=2),
        "static_services": STATIC_SERVICES,
    }


# Checks that change after the first pass, so that the pages have transitions to show.
INCIDENTS = (
    (
        "orders-2",
        "critical",
        'Get "http://127.0.0.1:18111/healthz": '
        "dial tcp 127.0.0.1:18111: connect: connection refused",
    ),
    (
        LONG_IDS[1],
        "warning",
        "HTTP GET http://10.42.187.23:8444/healthz/ready: 429 Too Many Requests",
    ),
    (LONG_IDS[1], "passing", "HTTP GET http://10.42.187.23:8444/healthz/ready: 200 OK"),
    ("orders-2", "passing", "HTTP GET http://127.0.0.1:18111/healthz: 200 OK"),
    # Consul's HTTP check output ends with the body it read: often JSON without a space.
    (
        "inventory-1",
        "warning",
        "HTTP GET http://127.0.0.1:18130/healthz: 200 OK Output: "
        '{"status":"degraded","db_latency_ms":870,"replica_lag_ms":15234,'
        '"pool":"inventory-primary-eu-west-1a","cache":"cold"}',
    ),
)


def collect_fleet(qd, consul: ConsulDouble, incidents=INCIDENTS, timeout_s: float = 20) -> None:
    """Collect every source once, then let the incidents happen and collect each of them."""
    for source in configured_sources(qd.config, qd.clock):
        collector = source.collector
        if collector is None:
            continue
        try:
            assert run_pass(qd, collector).ok, source.name
            if source.kind != "consul":
                continue
            for service_id, status, output in incidents:
                consul.set_check(f"service:{service_id}", status, output)
                deadline = time.monotonic() + timeout_s
                while _instance_health(qd, service_id) != status:
                    assert time.monotonic() < deadline, f"{service_id} never became {status}"
                    assert run_pass(qd, collector).ok
        finally:
            close = getattr(collector, "close", None)
            if close is not None:
                close()


def _instance_health(qd, service_id: str) -> str | None:
    with qd.store.session() as db:
        return db.scalar(select(Instance.health).where(Instance.source_id == service_id))
