"""Fleets to load into the Consul double: the demo's small mesh, and a large one for benchmarks."""

from __future__ import annotations

import json
from dataclasses import dataclass

from demo.consul import ConsulDouble

DEMO_NODES = {
    "node-a": {"availability-zone": "az-a", "os": "linux"},
    "node-b": {"availability-zone": "az-b", "os": "linux"},
    "node-c": {"availability-zone": "az-c", "os": "linux"},
}
LOOPBACK = "127.0.0.1"
SIDECAR_PORT_BASE = 21000  # the start of Consul's default sidecar port range
UPSTREAM_PORT_BASE = 19000


@dataclass(frozen=True)
class DemoService:
    """How one demo service is deployed."""

    name: str
    nodes: tuple[str, ...]
    version: str
    previous_version: str
    owner: str
    tags: tuple[str, ...]
    upstreams: tuple[str, ...] = ()
    in_mesh: bool = True
    canary_version: str = ""


DEMO_SERVICES = (
    DemoService(
        name="gateway",
        nodes=("node-a", "node-b"),
        version="1.8.2",
        previous_version="1.8.1",
        owner="team-edge",
        tags=("http", "edge"),
        upstreams=("orders",),
    ),
    DemoService(
        name="orders",
        nodes=("node-a", "node-b", "node-c"),
        version="2.4.1",
        previous_version="2.4.0",
        owner="team-commerce",
        tags=("http", "api"),
        upstreams=("payments", "inventory"),
        canary_version="2.5.0-rc.1",
    ),
    DemoService(
        name="payments",
        nodes=("node-b", "node-c"),
        version="3.1.0",
        previous_version="3.0.7",
        owner="team-payments",
        tags=("http", "api"),
    ),
    DemoService(
        name="inventory",
        nodes=("node-a", "node-c"),
        version="1.12.0",
        previous_version="1.11.3",
        owner="team-commerce",
        tags=("http", "api"),
    ),
    DemoService(
        name="push",
        nodes=("node-a", "node-b", "node-c"),
        version="0.9.4",
        previous_version="0.9.3",
        owner="team-realtime",
        tags=("websocket", "push"),
        in_mesh=False,
    ),
)


@dataclass(frozen=True)
class SeededInstance:
    """An application instance the seed registered (sidecars are not listed)."""

    service: str
    service_id: str
    node: str
    address: str
    port: int
    version: str


def seed_demo_fleet(double: ConsulDouble, base_port: int = 18100) -> list[SeededInstance]:
    """Register the demo mesh (gateway -> orders -> payments/inventory, and push) with releases.

    Instance ports are base_port + 10 * <service position> + <instance number>, so the demo can
    start real processes on them; every instance has a passing HTTP check.
    """
    seeded: list[SeededInstance] = []
    sidecar_port = SIDECAR_PORT_BASE
    upstream_port = UPSTREAM_PORT_BASE
    with double.batch():
        for node, meta in DEMO_NODES.items():
            double.register_node(node, LOOPBACK, meta)
        for position, spec in enumerate(DEMO_SERVICES):
            for number, node in enumerate(spec.nodes, 1):
                service_id = f"{spec.name}-{number}"
                port = base_port + 10 * position + number - 1
                is_canary = bool(spec.canary_version) and number == len(spec.nodes)
                version = spec.canary_version if is_canary else spec.version
                tags = [*spec.tags, *(["canary"] if is_canary else [])]
                meta = _service_meta(spec, version)
                double.register_service(
                    node,
                    service_id,
                    spec.name,
                    address=LOOPBACK,
                    port=port,
                    tags=tags,
                    meta=meta,
                    checks=[_http_check(service_id, spec.name, port)],
                )
                seeded.append(SeededInstance(spec.name, service_id, node, LOOPBACK, port, version))
                if not spec.in_mesh:
                    continue
                upstreams = []
                for upstream in spec.upstreams:
                    upstream_port += 1
                    upstreams.append(
                        {
                            "DestinationType": "service",
                            "DestinationName": upstream,
                            "LocalBindPort": upstream_port,
                        }
                    )
                _register_sidecar(
                    double, node, service_id, spec.name, port, sidecar_port, tags, meta, upstreams
                )
                sidecar_port += 1
        for spec in DEMO_SERVICES:
            double.kv_put(f"quarterdeck/releases/{spec.name}", _release_record(spec))
    return seeded


def seed_scale(
    double: ConsulDouble, services: int = 2000, instances_per_service: int = 5, nodes: int = 50
) -> list[str]:
    """Register a large fleet in one batch (waiters wake once); return the service names."""
    node_names = [f"scale-node-{n:03d}" for n in range(nodes)]
    names = [f"svc-{n:04d}" for n in range(services)]
    with double.batch():
        for n, node in enumerate(node_names):
            double.register_node(node, f"10.{n // 250}.{n % 250}.1", {"pool": "scale"})
        slot = 0
        for name in names:
            for number in range(instances_per_service):
                node = node_names[slot % nodes]
                slot += 1
                service_id = f"{name}-{number}"
                port = 20000 + number
                double.register_service(
                    node,
                    service_id,
                    name,
                    port=port,
                    tags=["scale", f"shard-{number}"],
                    meta={"version": "1.0.0", "owner": "team-scale"},
                    checks=[
                        {
                            "Status": "passing",
                            "Output": "HTTP GET /healthz: 200 OK",
                            "Type": "http",
                            "Interval": "10s",
                        }
                    ],
                )
    return names


def _service_meta(spec: DemoService, version: str) -> dict[str, str]:
    return {
        "version": version,
        "owner": spec.owner,
        "docs": f"https://docs.example.internal/services/{spec.name}",
        "runbook": f"https://runbooks.example.internal/{spec.name}",
    }


def _http_check(service_id: str, name: str, port: int) -> dict[str, str]:
    # The output Consul's HTTP check writes: request line, status, then the body it read.
    return {
        "CheckID": f"service:{service_id}",
        "Name": f"Service '{name}' check",
        "Status": "passing",
        "Output": f'HTTP GET http://{LOOPBACK}:{port}/healthz: 200 OK Output: {{"status":"ok"}}',
        "Type": "http",
        "Interval": "10s",
        "Timeout": "2s",
    }


def _register_sidecar(
    double: ConsulDouble,
    node: str,
    service_id: str,
    name: str,
    port: int,
    sidecar_port: int,
    tags: list[str],
    meta: dict[str, str],
    upstreams: list[dict[str, object]],
) -> None:
    # What `connect { sidecar_service {} }` expands to: a connect-proxy instance with the
    # parent's tags and meta, a TCP listening check and an alias check on the parent.
    sidecar_id = f"{service_id}-sidecar-proxy"
    double.register_service(
        node,
        sidecar_id,
        f"{name}-sidecar-proxy",
        port=sidecar_port,
        tags=tags,
        meta=meta,
        kind="connect-proxy",
        proxy={
            "DestinationServiceName": name,
            "DestinationServiceID": service_id,
            "LocalServiceAddress": LOOPBACK,
            "LocalServicePort": port,
            "Upstreams": upstreams,
        },
        checks=[
            {
                "Name": "Connect Sidecar Listening",
                "Status": "passing",
                "Output": f"TCP connect {LOOPBACK}:{sidecar_port}: Success",
                "Type": "tcp",
                "Interval": "10s",
            },
            {
                "Name": f"Connect Sidecar Aliasing {service_id}",
                "Status": "passing",
                "Output": "All checks passing.",
                "Type": "alias",
            },
        ],
    )


def _release_record(spec: DemoService) -> str:
    history = [
        {"version": spec.previous_version, "at": "2026-01-12T09:30:00Z", "by": "deploy-bot"},
        {"version": spec.version, "at": "2026-02-03T14:05:00Z", "by": "deploy-bot"},
    ]
    record = {"active": spec.version, "previous": spec.previous_version, "history": history}
    return json.dumps(record)
