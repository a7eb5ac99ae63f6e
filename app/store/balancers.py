"""Write balancer snapshots: replace a balancer's members and proxies, roll sessions up by minute.

A snapshot is the whole balancer, so what it no longer lists is deleted. Rows are diffed in
Python and only changed ones are written (one executemany per table and kind of change).
Members that match no catalog instance are written to the catalog as the service named like
their backend, with the balancer as its source (DESIGN §6).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from operator import attrgetter

from sqlalchemy import Row, delete, select
from sqlalchemy.orm import Session

from app.models import (
    Balancer,
    BalancerBackendRollup,
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
backend_rollups_t = BalancerBackendRollup.__table__
instances_t = Instance.__table__
services_t = Service.__table__

MEMBER_FIELDS = tuple(
    f.name for f in fields(BalancerServer) if f.name not in ("backend", "server", "last_change_s")
)
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
_HEALTH_AT = tuple(MEMBER_FIELDS.index(name) for name in _HEALTH_FIELDS)
_ADDRESS_AT = 3 + MEMBER_FIELDS.index("address")
_PORT_AT = 3 + MEMBER_FIELDS.index("port")
_SESSIONS_AT = 3 + MEMBER_FIELDS.index("sessions")
_member_values = attrgetter(*MEMBER_FIELDS)
_keyed_values = attrgetter("backend", "server", *MEMBER_FIELDS)
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
    catalog = load_catalog_match(session)
    unmatched = _unmatched(catalog, upd.servers)
    digest = members_digest(upd.servers, unmatched)
    balancer_id, previous_at, previous_total, previous_digest = _upsert_balancer(
        session, upd, changes, digest
    )
    changes.written += _replace_proxies(session, balancer_id, upd, at)
    if previous_digest == digest:
        # The same members with the same values and matches as the pass before.
        same = {(s.backend, s.server): s.sessions for s in upd.servers}
        _roll_up(session, upd, at, previous_at, {**same, ("", ""): previous_total})
        return changes

    # Rows as plain tuples in MEMBER_FIELDS order: a fleet-sized diff compares them whole.
    read = [members_t.c[name] for name in ("id", "backend", "server", *MEMBER_FIELDS)]
    held = session.execute(select(*read).where(members_t.c.balancer_id == balancer_id)).all()
    old_members = {(row[1], row[2]): tuple(row) for row in held}
    new_members = {(s.backend, s.server): s for s in upd.servers}
    inserts, updates = [], []
    health_changed = False
    for key, server in new_members.items():
        values = _member_values(server)
        changed_at = state_changed_at(server, at)
        old = old_members.get(key)
        if old is None:
            health_changed = True
            inserts.append({"balancer_id": balancer_id, "backend": key[0], "server": key[1],
                            **dict(zip(MEMBER_FIELDS, values, strict=True)),
                            "state_changed_at": changed_at, "changed_at": at})  # fmt: skip
        # lastchg moves only with the state, so state_changed_at is written, never compared:
        # a flap between two polls still shows in status, check_status or chkfail.
        elif old[3:] != values:
            health_changed |= any(old[3 + i] != values[i] for i in _HEALTH_AT)
            updates.append({"_id": old[0], **dict(zip(MEMBER_FIELDS, values, strict=True)),
                            "state_changed_at": changed_at, "changed_at": at})  # fmt: skip
        else:
            continue
        changes.services.add(_service_of(catalog, server))
    gone = [row for key, row in old_members.items() if key not in new_members]
    for row in gone:
        match = catalog.find(row[_ADDRESS_AT], row[_PORT_AT], row[2])
        changes.services.add(match[0] if match else row[1])
    # Every update sets every field, so one statement fits them all.
    _write(connection, members_t, inserts, updates, [row[0] for row in gone])
    changes.written += len(inserts) + len(updates) + len(gone)

    previous = {key: row[_SESSIONS_AT] for key, row in old_members.items()}
    previous[("", "")] = previous_total
    _roll_up(session, upd, at, previous_at, previous)

    if health_changed or gone or _held_members(session, upd.balancer) != _keys(unmatched):
        catalog_changes = apply_catalog_update(
            session,
            upd.balancer,
            CatalogUpdate(observed_at=at, services=_as_services(upd, unmatched), complete=True),
        )
        changes.services |= catalog_changes.changed_services
    return changes


def state_changed_at(server: BalancerServer, at: datetime) -> datetime | None:
    """Return when the member's state last changed (HAProxy lastchg), or None if not reported."""
    if server.last_change_s is None:
        return None
    return at - timedelta(seconds=server.last_change_s)


def _service_of(catalog: CatalogMatch, server: BalancerServer) -> str:
    match = catalog.find(server.address, server.port, server.server)
    return match[0] if match else server.backend


def _write(connection, table, inserts: list[dict], updates: list[dict], deletes: list[int]):
    insert_rows(connection, table, inserts)
    update_rows(connection, table, updates)
    for start in range(0, len(deletes), _CHUNK):
        connection.execute(delete(table).where(table.c.id.in_(deletes[start : start + _CHUNK])))


def members_digest(servers: Sequence[BalancerServer], unmatched: list[BalancerServer]) -> int:
    """Digest a snapshot's members, their values and which match no catalog instance.

    Python's hash: another process (another hash seed) just diffs once more; a collision
    would delay one write to the next change.
    """
    unmatched_ids = {id(server) for server in unmatched}
    matched = bytes(id(server) not in unmatched_ids for server in servers)
    return hash((tuple(map(_keyed_values, servers)), matched))


def _upsert_balancer(
    session: Session, upd: BalancerUpdate, changes: BalancerChanges, digest: int
) -> tuple[int, datetime | None, int | None, int | None]:
    """Write the balancer's row; return its id and the previous pass's time, total and digest."""
    totals = _totals(upd)
    row = session.execute(
        select(balancers_t).where(balancers_t.c.name == upd.balancer)
    ).one_or_none()
    values = {"kind": upd.kind, "per_server_sessions": upd.per_server_sessions, **totals}
    if row is None:
        values["members_digest"] = digest
        result = session.execute(
            balancers_t.insert().values(
                name=upd.balancer, observed_at=upd.observed_at, changed_at=upd.observed_at, **values
            )
        )
        changes.totals_changed = True
        return result.inserted_primary_key[0], None, None, None
    current = row._asdict()
    if any(current[name] != value for name, value in values.items()):
        values["changed_at"] = upd.observed_at
        changes.totals_changed = True
    session.execute(
        balancers_t.update()
        .where(balancers_t.c.id == row.id)
        .values(observed_at=upd.observed_at, members_digest=digest, **values)
    )
    return row.id, row.observed_at, row.active, row.members_digest


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


def _roll_up(
    session: Session,
    upd: BalancerUpdate,
    at: datetime,
    previous_at: datetime | None,
    previous: dict[tuple[str, str], int | None],
) -> None:
    """Fold this snapshot's sessions into the minute's min/max/last rows (one per member).

    Every pass folds what changed since the one before; the first pass of a minute starts
    its rows, so an unchanged value is already in them.
    """
    minute = minute_of(at)
    values: dict[tuple[str, str], int] = {
        (s.backend, s.server): s.sessions for s in upd.servers if s.sessions is not None
    }
    total = _totals(upd)["active"]
    if total is not None:
        values[("", "")] = total
    held: dict[tuple[str, str], Row] = {}
    continuing = previous_at is not None and minute_of(previous_at) >= minute
    if continuing:
        values = {key: value for key, value in values.items() if previous.get(key) != value}
        if not values:
            return
        query = select(
            rollups_t.c.id,
            rollups_t.c.backend,
            rollups_t.c.server,
            rollups_t.c.sessions_min,
            rollups_t.c.sessions_max,
            rollups_t.c.sessions_last,
        ).where(rollups_t.c.balancer == upd.balancer, rollups_t.c.minute_at == minute)
        if len(values) <= _CHUNK:
            query = query.where(rollups_t.c.server.in_(sorted({s for _, s in values})))
        held = {(row.backend, row.server): row for row in session.execute(query)}
    inserts, updates = [], []
    # What the writes add to each backend's sums: (sessions_last, servers).
    added: dict[str, list[int]] = {}
    for (backend, server), value in values.items():
        row = held.get((backend, server))
        if row is None:
            inserts.append({"balancer": upd.balancer, "backend": backend, "server": server,
                            "minute_at": minute, "sessions_min": value, "sessions_max": value,
                            "sessions_last": value})  # fmt: skip
            if backend:
                sums = added.setdefault(backend, [0, 0])
                sums[0] += value
                sums[1] += 1
        elif value != row.sessions_last or not row.sessions_min <= value <= row.sessions_max:
            updates.append({"_id": row.id, "sessions_min": min(row.sessions_min, value),
                            "sessions_max": max(row.sessions_max, value),
                            "sessions_last": value})  # fmt: skip
            if backend:
                added.setdefault(backend, [0, 0])[0] += value - row.sessions_last
    connection = session.connection()
    insert_rows(connection, rollups_t, inserts)
    update_rows(connection, rollups_t, updates)
    _roll_up_backends(session, upd.balancer, minute, added, continuing=continuing)


def _roll_up_backends(
    session: Session,
    balancer: str,
    minute: datetime,
    added: dict[str, list[int]],
    *,
    continuing: bool,
) -> None:
    """Add what this pass wrote to the minute's per-server rows to its per-backend sums.

    Every change to a server's row goes through `_roll_up`, so a backend's row stays the sum
    of its servers' rows of the minute (a server gone mid-minute keeps its row, and its part).
    """
    added = {backend: sums for backend, sums in added.items() if sums != [0, 0]}
    if not added:
        return
    held: dict[str, Row] = {}
    if continuing:
        held = {
            row.backend: row
            for row in session.execute(
                select(
                    backend_rollups_t.c.id,
                    backend_rollups_t.c.backend,
                    backend_rollups_t.c.sessions_last,
                    backend_rollups_t.c.servers,
                ).where(
                    backend_rollups_t.c.balancer == balancer,
                    backend_rollups_t.c.minute_at == minute,
                    backend_rollups_t.c.backend.in_(sorted(added)),
                )
            )
        }
    inserts, updates = [], []
    for backend, (sessions, servers) in sorted(added.items()):
        row = held.get(backend)
        if row is None:
            inserts.append({"balancer": balancer, "backend": backend, "minute_at": minute,
                            "sessions_last": sessions, "servers": servers})  # fmt: skip
        else:
            updates.append({"_id": row.id, "sessions_last": row.sessions_last + sessions,
                            "servers": row.servers + servers})  # fmt: skip
    connection = session.connection()
    insert_rows(connection, backend_rollups_t, inserts)
    update_rows(connection, backend_rollups_t, updates)


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
    # A server name is unique within its backend only (HAProxy `push/s1` and `chat/s1`): the
    # backend stands where a Consul instance has its node, so the two are two instances.
    return InstanceRecord(
        id=server.server,
        node=server.backend,
        address=server.address,
        port=server.port,
        meta={"balancer": upd.balancer, "backend": server.backend},
        checks=checks,
        checked=bool(checks),
    )
