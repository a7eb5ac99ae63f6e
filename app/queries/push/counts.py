"""Push counts per service and instance, each naming its source; imbalance over fair shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from app.queries.push.drains import DrainProgress, drain_progress
from app.queries.push.inputs import (
    ACTIVE_STATES,
    DRAINING_STATES,
    NGINX_NOTE,
    PROMETHEUS,
    BalancerTotal,
    CatalogMember,
    GaugeCount,
    MemberCount,
    json_number,
    json_round,
)
from app.queries.sources import iso

# An instance holding more than this many times its fair share is called out.
IMBALANCE_FACTOR = 2.0


@lru_cache(maxsize=1024)
def _iso_at(value: datetime, offset: timedelta | None) -> str | None:
    return iso(value)


def _iso(value: datetime | None) -> str | None:
    """`iso`, remembered: a balancer's 1,000 members share its one observed_at.

    Keyed by the offset too: equal times in other zones are written otherwise.
    """
    return None if value is None else _iso_at(value, value.utcoffset())


@dataclass(frozen=True)
class Reading:
    """One source's count for one instance."""

    source: str
    kind: str
    connections: float
    observed_at: datetime
    stale: bool
    backend: str = ""
    server: str = ""

    def to_json(self) -> dict:
        """Render as `sources[]` of an instance."""
        body = {
            "source": self.source,
            "kind": self.kind,
            "connections": json_number(self.connections),
            "stale": self.stale,
            "observed_at": _iso(self.observed_at),
        }
        if self.server:
            body["backend"], body["server"] = self.backend, self.server
        return body


@dataclass
class InstanceCount:
    """One instance's connections: the chosen number, where it comes from, and every reading.

    `settle()` works the figures out once every reading is in.
    """

    service: str
    instance: str
    readings: list[Reading] = field(default_factory=list)
    members: list[MemberCount] = field(default_factory=list)
    maintenance: bool = False
    fair_share: float | None = None
    imbalanced: bool = False
    # The readings the number is made of, and the figures drawn from them (see settle).
    chosen: list[Reading] = field(default_factory=list)
    connections: float | None = None  # None when no source counts them
    source: str | None = None  # the source's name; several HAProxy balancers joined by "+"
    source_kind: str | None = None  # haproxy | prometheus
    stale: bool = False  # the number comes from a stale source
    observed_at: datetime | None = None  # when the source saw it (the oldest, if several)
    state: str = "unknown"  # the most restrictive balancer state of its members
    active: bool = True  # it takes new connections (a fair share applies to it)

    def settle(self) -> InstanceCount:
        """Choose the readings: HAProxy before Prometheus, fresh before stale.

        Several HAProxy balancers in front of one instance each hold some of its connections,
        so their counts add up; Prometheus counts them all at once, so it is never added. When
        a balancer that cannot count per server (nginx OSS) also sends it connections, HAProxy
        sees only part of them: the instance's own gauge, when fresh, is the whole count.
        """
        # One pass over the readings (this runs once per instance: 1,000s per read).
        haproxy, gauge, fresh_haproxy, fresh_gauge = [], [], [], []
        for r in self.readings:
            if r.kind == "haproxy":
                haproxy.append(r)
                if not r.stale:
                    fresh_haproxy.append(r)
            elif r.kind == PROMETHEUS:
                gauge.append(r)
                if not r.stale:
                    fresh_gauge.append(r)
        uncounted_path = any(m.sessions is None and not m.stale for m in self.members)
        first = (fresh_gauge, fresh_haproxy) if uncounted_path else (fresh_haproxy, fresh_gauge)
        for group in (*first, haproxy, gauge):
            if group:
                self.chosen = group[:1] if group[0].kind == PROMETHEUS else group
                break
        chosen = self.chosen
        if len(chosen) == 1:
            [r] = chosen
            self.connections, self.source, self.source_kind = r.connections, r.source, r.kind
            self.stale, self.observed_at = r.stale, r.observed_at
        elif chosen:
            self.connections = sum(r.connections for r in chosen)
            self.source = "+".join(sorted({r.source for r in chosen}))
            self.source_kind = chosen[0].kind
            self.stale = any(r.stale for r in chosen)
            self.observed_at = min(r.observed_at for r in chosen)
        states = [m.state for m in self.members]
        self.state = next((s for s in ("maint", "down", "drain") if s in states),
                          states[0] if states else "unknown")  # fmt: skip
        self.active = not self.maintenance and all(s in ACTIVE_STATES for s in states)
        return self

    def to_json(self) -> dict:
        """Render as `by_service[].instances[]` (DESIGN §5, with more)."""
        return {
            "instance": self.instance,
            "connections": json_number(self.connections),
            "source": self.source,
            "source_kind": self.source_kind,
            "stale": self.stale,
            "observed_at": _iso(self.observed_at),
            "state": self.state,
            "active": self.active,
            "fair_share": json_round(self.fair_share),
            "imbalanced": self.imbalanced,
            "balancers": [
                {
                    "balancer": m.balancer,
                    "backend": m.backend,
                    "server": m.server,
                    "state": m.state,
                    "status": m.status,
                }
                for m in self.members
            ],  # fmt: skip
            "sources": [r.to_json() for r in self.readings],
        }


@dataclass
class ServiceCount:
    """A service's instances and their total (over the settled instances)."""

    service: str
    instances: list[InstanceCount]
    counted: list[InstanceCount] = field(init=False)  # the instances some source counts
    total: float | None = field(init=False)  # None when none is counted
    stale: bool = field(init=False)  # some number in the total is stale
    active_count: int = field(init=False)  # how many take new connections

    def __post_init__(self) -> None:
        self.counted = [i for i in self.instances if i.connections is not None]
        self.total = sum(i.connections for i in self.counted) if self.counted else None
        self.stale = any(i.stale for i in self.counted)
        self.active_count = sum(1 for i in self.instances if i.active)

    def to_json(self) -> dict:
        """Render as `by_service[]`."""
        return {
            "service": self.service,
            "total": json_number(self.total),
            "stale": self.stale,
            "active_instances": self.active_count,
            "instances": [i.to_json() for i in self.instances],
        }


@dataclass(frozen=True)
class Imbalance:
    """An instance holding more than IMBALANCE_FACTOR times its service's fair share."""

    service: str
    instance: str
    connections: float
    fair_share: float
    source: str | None

    @property
    def ratio(self) -> float:
        """Its connections over the fair share."""
        return self.connections / self.fair_share

    def to_json(self) -> dict:
        """Render as `imbalance[]`."""
        return {
            "service": self.service,
            "instance": self.instance,
            "connections": json_number(self.connections),
            "fair_share": json_round(self.fair_share),
            "ratio": json_round(self.ratio, 2),
            "source": self.source,
        }


@dataclass
class PushConnections:
    """Everything the Push page and `/api/v1/push/connections` show."""

    observed_at: datetime | None
    services: list[ServiceCount]
    balancers: list[BalancerTotal]
    imbalance: list[Imbalance]
    drains: list[DrainProgress]
    # Why nothing can be counted, when nothing can (a sentence for the page and the API).
    uncounted_reason: str | None = None

    @property
    def total(self) -> float | None:
        """All counted instances' connections, or None when no instance is counted."""
        totals = [s.total for s in self.services if s.total is not None]
        return sum(totals) if totals else None

    @property
    def stale(self) -> bool:
        """Whether any number in the total is stale."""
        return any(s.stale for s in self.services)

    @property
    def instance_count(self) -> int:
        """How many instances are listed."""
        return sum(len(s.instances) for s in self.services)

    def to_json(self) -> dict:
        """Render as DESIGN §5 `/api/v1/push/connections`, with more."""
        return {
            "total": json_number(self.total),
            "observed_at": _iso(self.observed_at),
            "stale": self.stale,
            "by_service": [s.to_json() for s in self.services],
            "balancers": [_balancer_json(b) for b in self.balancers],
            "imbalance": [i.to_json() for i in self.imbalance],
            "drains": [d.to_json() for d in self.drains],
            "uncounted_reason": self.uncounted_reason,
        }


def _balancer_json(total: BalancerTotal) -> dict:
    return {
        "balancer": total.balancer,
        "kind": total.kind,
        "connections": json_number(total.connections),
        "per_server": total.per_server,
        "stale": total.stale,
        "observed_at": _iso(total.observed_at),
        "note": None if total.per_server else NGINX_NOTE,
    }


def count_connections(
    members: Iterable[MemberCount],
    gauges: Iterable[GaugeCount],
    balancers: Iterable[BalancerTotal],
    catalog: Iterable[CatalogMember] = (),
    history: dict[tuple[str, str, str], Sequence[tuple[datetime, float]]] | None = None,
    *,
    gauge_configured: bool = False,
) -> PushConnections:
    """Put every source's counts together per service and instance.

    `history` maps (balancer, backend, server) to its observed connections, oldest first
    (the stored 1-minute rollups and the latest observation), for drain progress.
    """
    members = list(members)
    balancers = list(balancers)
    by_key: dict[tuple[str, str], InstanceCount] = {}

    def instance(service: str, name: str) -> InstanceCount:
        key = (service, name)
        if key not in by_key:
            by_key[key] = InstanceCount(service, name)
        return by_key[key]

    for m in catalog:
        if m.maintenance:
            instance(m.service, m.instance).maintenance = True
    aliases = _gauge_aliases(catalog, members)
    for m in members:
        counted = instance(m.service, m.instance)
        counted.members.append(m)
        if m.sessions is not None:
            counted.readings.append(
                Reading(m.balancer, m.kind, m.sessions, m.observed_at, m.stale, m.backend, m.server)
            )
    for g in gauges:
        name = aliases.get((g.service, g.instance), g.instance)
        reading = Reading(PROMETHEUS, PROMETHEUS, g.connections, g.observed_at, g.stale)
        instance(g.service, name).readings.append(reading)

    services: dict[str, list[InstanceCount]] = {}
    for counted in by_key.values():
        if counted.readings or counted.members:
            services.setdefault(counted.service, []).append(counted.settle())
    service_counts = [
        ServiceCount(name, sorted(found, key=lambda i: i.instance))
        for name, found in sorted(services.items())
    ]
    imbalance = [i for s in service_counts for i in find_imbalance(s)]
    drains = [
        drain_progress(by_key[(m.service, m.instance)], m, (history or {}).get(_member_key(m), ()))
        for m in members
        if m.state in DRAINING_STATES
    ]
    observed = [i.observed_at for s in service_counts for i in s.counted] + [
        b.observed_at for b in balancers if b.observed_at is not None
    ]
    result = PushConnections(
        observed_at=max(observed) if observed else None,
        services=service_counts,
        balancers=balancers,
        imbalance=imbalance,
        drains=sorted(drains, key=lambda d: (d.service, d.instance, d.balancer)),
    )
    result.uncounted_reason = _uncounted_reason(result, members, gauge_configured)
    return result


def _member_key(m: MemberCount) -> tuple[str, str, str]:
    return (m.balancer, m.backend, m.server)


def _gauge_aliases(
    catalog: Iterable[CatalogMember], members: Sequence[MemberCount]
) -> dict[tuple[str, str], str]:
    """Map a gauge's (service, instance label) to the instance name the page uses.

    The push service labels its gauge with its own idea of `instance`: the catalog id, its
    address:port, or the balancer's server name. Each is tied to the catalog instance (or the
    balancer member) it names.
    """
    aliases: dict[tuple[str, str], str] = {}
    for m in catalog:
        if m.address and m.port:
            aliases[(m.service, f"{m.address}:{m.port}")] = m.instance
    for m in members:
        aliases.setdefault((m.service, m.server), m.instance)
    for m in catalog:
        aliases[(m.service, m.instance)] = m.instance
    return aliases


def find_imbalance(service: ServiceCount) -> list[Imbalance]:
    """Mark the active instances holding more than twice their fair share.

    The fair share is the service's total over its active instances (those taking new
    connections): with one active instance there is nothing to balance.
    """
    total, active = service.total, service.active_count
    if total is None or active < 2 or total <= 0:
        return []
    fair = total / active
    found = []
    for counted in service.instances:
        if not counted.active:
            continue
        counted.fair_share = fair
        connections = counted.connections
        if connections is not None and connections > IMBALANCE_FACTOR * fair:
            counted.imbalanced = True
            found.append(
                Imbalance(service.service, counted.instance, connections, fair, counted.source)
            )
    return found


def _uncounted_reason(
    result: PushConnections, members: Sequence[MemberCount], gauge_configured: bool
) -> str | None:
    if result.total is not None:
        return None
    if any(b.connections is not None for b in result.balancers):
        return (
            "No source counts connections per instance: the balancers report only their "
            "totals (" + NGINX_NOTE + "). Configure a HAProxy balancer or the Prometheus "
            "push gauge for per-instance counts."
        )
    if members or result.balancers or gauge_configured:
        return (
            "No source reports push connections yet: no HAProxy server has a session count "
            "and Prometheus has no push_connections_active series."
        )
    return (
        "No source can count push connections: configure a [[haproxy]] balancer in front "
        "of the push service, an [[nginx]] balancer (totals only), or [prometheus] with the "
        "push_connections_active gauge."
    )
