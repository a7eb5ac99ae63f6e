"""What the push counts are made of: the sources' numbers, as plain records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Balancer states in which a server takes no new connections (collectors/balancers.py).
DRAINING_STATES = ("drain", "maint", "down")
# A balancer state that still takes new connections.
ACTIVE_STATES = ("up", "nolb", "unchecked")
NGINX_NOTE = "nginx OSS reports only its total of active client connections, not per server"
PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class MemberCount:
    """One balancer member as the balancer store holds it, matched to a service instance."""

    balancer: str
    kind: str  # haproxy | nginx
    backend: str
    server: str
    service: str  # the matched catalog service, else the backend's name
    instance: str  # the matched catalog instance id, else the balancer's own member id
    state: str  # collectors.balancers.SERVER_STATES
    status: str  # the balancer's own words ("DRAIN", "MAINT (via be/s1)", "down")
    sessions: int | None  # HAProxy scur; None when the balancer cannot count per server
    observed_at: datetime
    stale: bool
    # When the member entered its current state (HAProxy lastchg), if known.
    state_since: datetime | None = None


@dataclass(frozen=True)
class GaugeCount:
    """The Prometheus push gauge of one instance."""

    service: str
    instance: str
    connections: float
    observed_at: datetime
    stale: bool


@dataclass(frozen=True)
class BalancerTotal:
    """A balancer's own connection total (nginx stub_status Active; HAProxy frontends' scur)."""

    balancer: str
    kind: str
    connections: int | None
    per_server: bool  # False for nginx OSS
    observed_at: datetime | None
    stale: bool


@dataclass(frozen=True)
class CatalogMember:
    """A catalog instance, to tie a gauge's `instance` label to the balancer's member."""

    service: str
    instance: str  # the catalog's own id
    address: str = ""
    port: int = 0
    maintenance: bool = False
    source: str = ""  # the catalog source that lists it (a balancer, for its own members)


def json_number(value: float | None) -> int | float | None:
    """A count as JSON: whole numbers as integers."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 2)


def json_round(value: float | None, digits: int = 1) -> float | None:
    """A measure (a rate, a share) rounded for JSON."""
    return None if value is None else round(value, digits)
