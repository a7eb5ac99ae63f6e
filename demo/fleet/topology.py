"""What the demo fleet is made of: services, their instances, routes and downstream calls."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Call:
    """A downstream HTTP call a route makes, to a service found in Consul."""

    service: str
    method: str
    path: str
    # A call the service skips while its degrade switch has this feature off (fleet.degrade).
    feature: str = ""


@dataclass(frozen=True)
class Route:
    """An HTTP route of a service, what it costs and whom it calls."""

    method: str
    path: str
    calls: tuple[Call, ...] = ()
    latency_ms: float = 8.0
    # A fraction of requests that fail on their own (500), before any downstream failure.
    error_rate: float = 0.005


@dataclass(frozen=True)
class FleetService:
    """One service of the demo fleet."""

    name: str
    instances: int
    version: str
    previous_version: str
    owner: str
    tags: tuple[str, ...]
    routes: tuple[Route, ...] = ()
    websocket: bool = False
    # The last instance runs this version as a canary, when set.
    canary_version: str = ""

    @property
    def upstreams(self) -> tuple[str, ...]:
        """The services this one calls, in order of first use."""
        seen: dict[str, None] = {}
        for route in self.routes:
            for call in route.calls:
                seen.setdefault(call.service)
        return tuple(seen)


FLEET = (
    FleetService(
        name="gateway",
        instances=2,
        version="1.8.2",
        previous_version="1.8.1",
        owner="team-edge",
        tags=("http", "edge"),
        routes=(
            Route("GET", "/api/checkout", (Call("orders", "POST", "/orders"),), latency_ms=3),
            # Degraded with "live-stock" off, the gateway answers stock without asking inventory.
            Route(
                "GET",
                "/api/stock",
                (Call("inventory", "GET", "/stock", feature="live-stock"),),
                latency_ms=2,
            ),
        ),
    ),
    FleetService(
        name="orders",
        instances=2,
        version="2.4.1",
        previous_version="2.4.0",
        owner="team-commerce",
        tags=("http", "api"),
        routes=(
            Route(
                "POST",
                "/orders",
                # Degraded with "reservations" off, orders are taken without reserving stock.
                (
                    Call("inventory", "POST", "/reserve", feature="reservations"),
                    Call("payments", "POST", "/charge"),
                ),
                latency_ms=12,
            ),
        ),
        canary_version="2.5.0-rc.1",
    ),
    FleetService(
        name="payments",
        instances=2,
        version="3.1.0",
        previous_version="3.0.7",
        owner="team-payments",
        tags=("http", "api"),
        routes=(Route("POST", "/charge", latency_ms=25, error_rate=0.01),),
    ),
    FleetService(
        name="inventory",
        instances=1,
        version="1.12.0",
        previous_version="1.11.3",
        owner="team-commerce",
        tags=("http", "api"),
        routes=(
            Route("GET", "/stock", latency_ms=4),
            Route("POST", "/reserve", latency_ms=9),
        ),
    ),
    FleetService(
        name="push",
        instances=3,
        version="0.9.4",
        previous_version="0.9.3",
        owner="team-realtime",
        tags=("websocket", "push"),
        websocket=True,
    ),
)
SERVICES = {service.name: service for service in FLEET}


@dataclass(frozen=True)
class PlannedInstance:
    """One instance of the fleet: its Consul ID, port and version."""

    service: str
    instance_id: str
    number: int
    port: int
    version: str
    canary: bool

    @property
    def address(self) -> str:
        """Return host:port."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """Return the instance's base URL."""
        return f"http://{LOOPBACK}:{self.port}"


def plan_instances(ports: list[int]) -> list[PlannedInstance]:
    """Give every instance of FLEET an ID (`<service>-<n>`, as Consul IDs go) and a port."""
    planned: list[PlannedInstance] = []
    free = iter(ports)
    for service in FLEET:
        for number in range(1, service.instances + 1):
            canary = bool(service.canary_version) and number == service.instances
            version = service.canary_version if canary else service.version
            planned.append(
                PlannedInstance(
                    service.name, f"{service.name}-{number}", number, next(free), version, canary
                )
            )
    return planned


def instance_count() -> int:
    """Return how many instances the fleet has."""
    return sum(service.instances for service in FLEET)


def service_meta(service: FleetService, version: str) -> dict[str, str]:
    """Return the Consul Service.Meta an instance registers with."""
    return {
        "version": version,
        "owner": service.owner,
        "docs": f"https://docs.example.internal/services/{service.name}",
        "runbook": f"https://runbooks.example.internal/{service.name}",
    }


def release_record(service: FleetService, now: datetime | None = None, canary: bool = True) -> str:
    """Return the JSON of `quarterdeck/releases/<service>` (DESIGN §6).

    A service with a canary is mid-release (unless `canary` is false): the canary is active and
    the stable version is previous, so a rollback in the demo moves real traffic back to the
    stable instances. With `now`, the history is dated back from it (the canary went out
    `now`); without, it carries fixed dates.
    """
    if now is None:
        dates = ("2026-01-12T09:30:00Z", "2026-02-03T14:05:00Z", "2026-02-20T10:00:00Z")
    else:
        dates = tuple(
            (now - ago).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for ago in (timedelta(days=23), timedelta(days=2), timedelta(0))
        )
    history = [
        {"version": service.previous_version, "at": dates[0], "by": "deploy-bot"},
        {"version": service.version, "at": dates[1], "by": "deploy-bot"},
    ]
    active, previous = service.version, service.previous_version
    if service.canary_version and canary:
        history.append({"version": service.canary_version, "at": dates[2], "by": "deploy-bot"})
        active, previous = service.canary_version, service.version
    return json.dumps({"active": active, "previous": previous, "history": history})
