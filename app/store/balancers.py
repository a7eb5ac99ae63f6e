"""Write balancer snapshots: replace a balancer's members and proxies, roll sessions up by minute.

A snapshot is the whole balancer, so what it no longer lists is deleted. Rows are diffed in
Python and only changed ones are written (one executemany per table and kind of change).
Members that match no catalog instance are written to the catalog as the service named like
their backend, with the balancer as its source (DESIGN §6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import (
    Balancer,
    BalancerMember,
    BalancerProxyState,
    BalancerRollup,
    Instance,
    Service,
)
from app.store.bulk import insert_rows, update_rows
from app.store.catalog import apply_catalog_update
from collectors.balancers import BalancerServer, BalancerUpdate
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord

_CHUNK = 500
balancers_t = Balancer.__table__
members_t = BalancerMember.__table__
proxies_t = BalancerProxyState.__table__
rollups_t = BalancerRollup.__table__
instances_t = Instance.__table__
services_t = Service.__table__

MEMBER_FIELDS = tuple(f.name for f in fields(BalancerServer) if f.name not in ("backend", "server"))
PROXY_FIELDS = (
    "status",
    "sessions",
    "max_sessions",
    "session_limit",
    "total_sessions",
    "session_rate",
    "request_rate",
    "http_5xx",
)
TOTAL_FIELDS = ("active", "accepts", "handled", "requests", "reading", "writing", "waiting")
# What a balancer-only instance's health follows from; other fields change without a catalog pass.
_HEALTH_FIELDS = ("address", "port", "state", "status", "transitional", "check_status")
# A member's state as a catalog check; "unchecked" has none, so its health is "unknown".
CHECK_STATUS = {
    "up": "passing",
    "nolb": "warning",
    "drain": "warning",
    "down": "critical",
    "maint": "passing",
}


@dataclass
class BalancerChanges:
    """What one snapshot changed, for the run record and the live feed."""

    members: int = 0
    proxies: int = 0
    written: int = 0  # member and proxy rows inserted, updated or deleted
    totals_changed: bool = False
    # Services whose balancer rows changed: matched instances' services and backends' names.
    services: set[str] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        """Tell whether any value the pages show changed."""
        return bool(self.written or self.totals_changed)

    def counts(self) -> dict[str, int]:
        """Return the figures kept on the collector-run record."""
        return {
            "members": self.members,
            "proxies": self.proxies,
            "rows_written": self.written,
            "changed_services": len(self.services),
        }


@dataclass(frozen=True)
class CatalogMatch:
    """The live catalog instances of other sources, indexed the way members are matched."""

    by_address: dict[tuple[str, int], tuple[str, str]]  # (address, port) -> (service, id)
    by_name: dict[str, tuple[str, str]]  # instance id -> (service, id)

    def find(self, address: str, port: int, server: str) -> tuple[str, str] | None:
        """Return the (service, instance id) a member is, by address:port, else by name."""
        if address and port:
            hit = self.by_address.get((address, port))
            if hit is not None:
                return hit
        return self.by_name.get(server)


def load_catalog_match(session: Session) -> CatalogMatch:
    """Index the live catalog instances members can match: not those the balancers made."""
    rows = session.execute(
        select(
            services_t.c.name, instances_t.c.source_id, instances_t.c.address, instances_t.c.port
        )
        .join(services_t, services_t.c.id == instances_t.c.service_id)
        .where(
            instances_t.c.gone_at.is_(None),
            services_t.c.gone_at.is_(None),
            services_t.c.source.not_in(select(balancers_t.c.name)),
        )
        .order_by(services_t.c.name, instances_t.c.source_id)
    )
    by_address: dict[tuple[str, int], tuple[str, str]] = {}
    by_name: dict[str, tuple[str, str]] = {}
    for name, source_id, address, port in rows:
        if address and port:
            by_address.setdefault((address, port), (name, source_id))
        by_name.setdefault(source_id, (name, source_id))
    return CatalogMatch(by_address, by_name)


def apply_balancer_update(session: Session, source: str, upd: BalancerUpdate) -> BalancerChanges:
    """Replace what is held for one balancer with its snapshot; flush, don't commit."""
    changes = BalancerChanges(members=len(upd.servers), proxies=len(upd.proxies))
    at = upd.observed_at
    connection = session.connection()
    balancer_id = _upsert_balancer(session, upd, changes)
    catalog = load_catalog_match(session)

    old_members = {
        (row.backend, row.server): row._asdict()
        for row in session.execute(select(members_t).where(members_t.c.balancer_id == balancer_id))
    }
    new_members = {(s.backend, s.server): s for s in upd.servers}
    inserts, updates = [], []
    health_changed = False
    for key, server in new_members.items():
        values = {name: getattr(server, name) for name in MEMBER_FIELDS}
        old = old_members.get(key)
        if old is None:
            inserts.append({"balancer_id": balancer_id, "backend": key[0], "server": key[1],
                            **values, "changed_at": at})  # fmt: skip
            health_changed = True
        elif any(old[name] != value for name, value in values.items()):
            updates.append({"_id": old["id"], **values, "changed_at": at})
            health_changed |= any(old[name] != values[name] for name in _HEALTH_FIELDS)
        else:
            continue
        changes.services.add(_service_of(catalog, server))
    gone = [row for key, row in old_members.items() if key not in new_members]
    for row in gone:
        match = catalog.find(row["address"], row["port"], row["server"])
        changes.services.add(match[0] if match else row["backend"])
    # Every update sets every field, so one statement fits them all.
    _write(connection, members_t, inserts, updates, [row["id"] for row in gone])
    changes.written += len(inserts) + len(updates) + len(gone)

    changes.written += _replace_proxies(session, balancer_id, upd, at)
    _roll_up(session, upd, at)

    unmatched = _unmatched(catalog, upd.servers)
    if health_changed or gone or _held_members(session, upd.balancer) != _keys(unmatched):
        catalog_changes = apply_catalog_update(
            session,
            upd.balancer,
            CatalogUpdate(observed_at=at, services=_as_services(upd, unmatched), complete=True),
        )
        changes.services |= catalog_changes.changed_services
    return changes


def _service_of(catalog: CatalogMatch, server: BalancerServer) -> str:
    match = catalog.find(server.address, server.port, server.server)
    return match[0] if match else server.backend


def _write(connection, table, inserts: list[dict], updates: list[dict], deletes: list[int]):
    insert_rows(connection, table, inserts)
    update_rows(connection, table, updates)
    for start in range(0, len(deletes), _CHUNK):
        connection.execute(delete(table).where(table.c.id.in_(deletes[start : start + _CHUNK])))


def _upsert_balancer(session: Session, upd: BalancerUpdate, changes: BalancerChanges) -> int:
    totals = _totals(upd)
    row = session.execute(
        select(balancers_t).where(balancers_t.c.name == upd.balancer)
    ).one_or_none()
    values = {"kind": upd.kind, "per_server_sessions": upd.per_server_sessions, **totals}
    if row is None:
        result = session.execute(
            balancers_t.insert().values(
                name=upd.balancer, observed_at=upd.observed_at, changed_at=upd.observed_at, **values
            )
        )
        changes.totals_changed = True
        return result.inserted_primary_key[0]
    current = row._asdict()
    if any(current[name] != value for name, value in values.items()):
        values["changed_at"] = upd.observed_at
        changes.totals_changed = True
    session.execute(
        balancers_t.update()
        .where(balancers_t.c.id == row.id)
        .values(observed_at=upd.observed_at, **values)
    )
    return row.id


def _totals(upd: BalancerUpdate) -> dict[str, int | None]:
    """The whole balancer's figures: nginx stub_status, or the sum of HAProxy frontends."""
    if upd.connections is not None:
        return {name: getattr(upd.connections, name) for name in TOTAL_FIELDS}
    frontends = [p.sessions for p in upd.proxies if p.kind == "frontend" and p.sessions is not None]
    return {
        **dict.fromkeys(TOTAL_FIELDS),
        "active": sum(frontends) if frontends else None,
    }


def _replace_proxies(session: Session, balancer_id: int, upd: BalancerUpdate, at: datetime) -> int:
    old = {
        (row.kind, row.name): row._asdict()
        for row in session.execute(select(proxies_t).where(proxies_t.c.balancer_id == balancer_id))
    }
    new = {(p.kind, p.name): p for p in upd.proxies}
    inserts, updates = [], []
    for key, proxy in new.items():
        values = {name: getattr(proxy, name) for name in PROXY_FIELDS}
        row = old.get(key)
        if row is None:
            inserts.append({"balancer_id": balancer_id, "kind": key[0], "name": key[1],
                            **values, "changed_at": at})  # fmt: skip
        elif any(row[name] != value for name, value in values.items()):
            updates.append({"_id": row["id"], **values, "changed_at": at})
    gone = [row["id"] for key, row in old.items() if key not in new]
    _write(session.connection(), proxies_t, inserts, updates, gone)
    return len(inserts) + len(updates) + len(gone)


def minute_of(at: datetime) -> datetime:
    """Return the start of the minute a time falls in."""
    return at.replace(second=0, microsecond=0)


def _roll_up(session: Session, upd: BalancerUpdate, at: datetime) -> None:
    """Fold this snapshot's sessions into the minute's min/max/last rows (one per member)."""
    minute = minute_of(at)
    values: dict[tuple[str, str], int] = {
        (s.backend, s.server): s.sessions for s in upd.servers if s.sessions is not None
    }
    total = _totals(upd)["active"]
    if total is not None:
        values[("", "")] = total
    if not values:
        return
    held = {
        (row.backend, row.server): row
        for row in session.execute(
            select(
                rollups_t.c.id,
                rollups_t.c.backend,
                rollups_t.c.server,
                rollups_t.c.sessions_min,
                rollups_t.c.sessions_max,
                rollups_t.c.sessions_last,
            ).where(rollups_t.c.balancer == upd.balancer, rollups_t.c.minute_at == minute)
        )
    }
    inserts, updates = [], []
    for (backend, server), value in values.items():
        row = held.get((backend, server))
        if row is None:
            inserts.append({"balancer": upd.balancer, "backend": backend, "server": server,
                            "minute_at": minute, "sessions_min": value, "sessions_max": value,
                            "sessions_last": value})  # fmt: skip
        elif value != row.sessions_last or not row.sessions_min <= value <= row.sessions_max:
            updates.append({"_id": row.id, "sessions_min": min(row.sessions_min, value),
                            "sessions_max": max(row.sessions_max, value),
                            "sessions_last": value})  # fmt: skip
    connection = session.connection()
    insert_rows(connection, rollups_t, inserts)
    update_rows(connection, rollups_t, updates)


def _unmatched(catalog: CatalogMatch, servers: Iterable[BalancerServer]) -> list[BalancerServer]:
    return [s for s in servers if catalog.find(s.address, s.port, s.server) is None]


def _keys(servers: Iterable[BalancerServer]) -> set[tuple[str, str]]:
    return {(s.backend, s.server) for s in servers}


def _held_members(session: Session, balancer: str) -> set[tuple[str, str]]:
    """The (backend, server) pairs the catalog now lists under the balancer as source."""
    rows = session.execute(
        select(services_t.c.name, instances_t.c.source_id)
        .join(services_t, services_t.c.id == instances_t.c.service_id)
        .where(
            services_t.c.source == balancer,
            services_t.c.gone_at.is_(None),
            instances_t.c.gone_at.is_(None),
        )
    )
    return {(name, source_id) for name, source_id in rows}


def _as_services(upd: BalancerUpdate, unmatched: list[BalancerServer]) -> list[ServiceRecord]:
    """Group unmatched members into the services named like their backends."""
    by_backend: dict[str, list[InstanceRecord]] = {}
    for server in unmatched:
        by_backend.setdefault(server.backend, []).append(_as_instance(upd, server))
    return [
        ServiceRecord(name=backend, meta={"balancer": upd.balancer}, instances=tuple(instances))
        for backend, instances in sorted(by_backend.items())
    ]


def _as_instance(upd: BalancerUpdate, server: BalancerServer) -> InstanceRecord:
    """A balancer-only member as a catalog instance; its one check is the balancer's view."""
    checks: tuple[CheckRecord, ...] = ()
    if server.state in CHECK_STATUS:
        status = CHECK_STATUS[server.state]
        if server.transitional and status == "passing":
            status = "warning"  # HAProxy "UP 1/3": checks are failing, not down yet
        output = " ".join(part for part in (server.status, server.check_status) if part)
        kind = "maintenance" if server.state == "maint" else "service"
        checks = (
            CheckRecord(
                check_id=f"{upd.balancer}:{server.backend}/{server.server}",
                name=f"{upd.balancer} {upd.kind}",
                status=status,
                output=output,
                notes=output if kind == "maintenance" else "",
                kind=kind,
            ),
        )
    return InstanceRecord(
        id=server.server,
        address=server.address,
        port=server.port,
        meta={"balancer": upd.balancer, "backend": server.backend},
        checks=checks,
        checked=bool(checks),
    )
