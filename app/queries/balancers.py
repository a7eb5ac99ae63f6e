"""Balancer members as the service pages and the API show them, matched to catalog instances.

A member is matched to a catalog instance by address:port, else by name (DESIGN §6); one that
matches none belongs to the service named like its backend, under its server name. The
store makes those balancer-only members catalog instances of their own service
(`app/store/balancers.py`); here each service gets the rows of the members that are its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.models import Balancer, BalancerMember, Instance, Service
from app.queries.sources import SourceView, iso
from app.store.balancers import CHECK_STATUS, load_catalog_match

balancers_t = Balancer.__table__
members_t = BalancerMember.__table__
instances_t = Instance.__table__
services_t = Service.__table__

_MEMBER_COLUMNS = [
    members_t.c[name]
    for name in (
        "backend",
        "server",
        "address",
        "port",
        "state",
        "status",
        "transitional",
        "check_status",
        "weight",
        "backup",
        "sessions",
        "session_limit",
        "check_failures",
        "state_changed_at",
    )
]
_BALANCER_COLUMNS = [
    balancers_t.c.name.label("balancer"),
    balancers_t.c.kind,
    balancers_t.c.observed_at,
    balancers_t.c.per_server_sessions,
]


def lb_rows_by_instance(
    db: Session,
    service: str,
    sources: Mapping[str, SourceView],
    now: datetime,
) -> dict[str, list[dict]]:
    """Return DESIGN §5 `lb` rows of one service's members, keyed by instance id.

    Matched members are keyed by the catalog instance's id, balancer-only members by their
    server name. A member matched to another service's instance is never listed here, even
    when its backend is named like this service. A balancer no longer configured is stale.
    """
    return lb_rows_by_service(db, [service], sources, now).get(service, {})


def lb_rows_by_service(
    db: Session,
    services: Iterable[str],
    sources: Mapping[str, SourceView],
    now: datetime,
) -> dict[str, dict[str, list[dict]]]:
    """Return the `lb` rows of several services at once: service -> instance key -> rows.

    Each service's rows are exactly those `lb_rows_by_instance` gives it; the catalog is
    matched once for all of them.
    """
    wanted = sorted(set(services))
    if not wanted:
        return {}
    own = db.execute(
        select(instances_t.c.source_id, instances_t.c.address)
        .join(services_t, services_t.c.id == instances_t.c.service_id)
        .where(services_t.c.name.in_(wanted), instances_t.c.gone_at.is_(None))
    ).all()
    ids = sorted({row.source_id for row in own})
    addresses = sorted({row.address for row in own if row.address})
    candidates = or_(
        members_t.c.backend.in_(wanted),
        members_t.c.server.in_(ids),
        members_t.c.address.in_(addresses),
    )
    rows = db.execute(
        select(*_BALANCER_COLUMNS, *_MEMBER_COLUMNS)
        .join(balancers_t, balancers_t.c.id == members_t.c.balancer_id)
        .where(candidates)
        .order_by(balancers_t.c.name, members_t.c.backend, members_t.c.server)
    ).all()
    if not rows:
        return {}
    catalog = load_catalog_match(db)
    names = set(wanted)
    found: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        match = catalog.find(row.address, row.port, row.server)
        if match is not None and match[0] in names:
            service, key = match
        elif match is None and row.backend in names:
            service, key = row.backend, row.server
        else:
            continue
        by_key = found.setdefault(service, {})
        by_key.setdefault(key, []).append(lb_row_json(row, sources.get(row.balancer), now))
    return found


# Member states in which a balancer sends a server new requests ("unchecked": HAProxy has no
# check for it and serves it). DRAIN, MAINT, NOLB and down are out of rotation.
SERVING_STATES = ("up", "unchecked")


def balancer_summary(lb: Mapping[str, list[dict]]) -> list[dict]:
    """Count one service's members per balancer: how many serve, of how many, and the rest.

    `lb` is a service's rows by instance (`lb_rows_by_instance`). One entry per balancer, by
    name: {balancer, kind, serving, total, out: {state: count}, stale}.
    """
    summary: dict[str, dict] = {}
    for rows in lb.values():
        for row in rows:
            entry = summary.setdefault(
                row["balancer"],
                {
                    "balancer": row["balancer"],
                    "kind": row["kind"],
                    "serving": 0,
                    "total": 0,
                    "out": {},
                    "stale": False,
                },
            )
            entry["total"] += 1
            if row["state"] in SERVING_STATES:
                entry["serving"] += 1
            else:
                entry["out"][row["state"]] = entry["out"].get(row["state"], 0) + 1
            entry["stale"] = entry["stale"] or row["stale"]
    return [summary[name] for name in sorted(summary)]


def lb_row_json(row, source: SourceView | None, now: datetime) -> dict:
    """Render one member as an `lb` row: what its balancer says of it, and how fresh that is."""
    stale = source.stale if source is not None else True
    return {
        "balancer": row.balancer,
        "kind": row.kind,
        "backend": row.backend,
        "server": row.server,
        "address": row.address,
        "port": row.port,
        "state": row.state,
        "status": row.status,
        "transitional": row.transitional,
        "check_status": row.check_status or None,
        "weight": row.weight,
        "backup": row.backup,
        # None, never 0, when the balancer cannot count per server (nginx OSS).
        "sessions": row.sessions if row.per_server_sessions else None,
        "session_limit": row.session_limit,
        "check_failures": row.check_failures,
        "state_changed_at": iso(row.state_changed_at),
        "observed_at": iso(row.observed_at),
        "age_s": round((now - row.observed_at).total_seconds(), 1),
        "stale": stale,
    }


def balancer_only_instances_json(lb: Mapping[str, list[dict]], known_ids: set[str]) -> list[dict]:
    """Render the members keyed by no catalog instance of the service as instances of their own.

    They are a backend's unmatched members when the service of that name belongs to another
    source (the catalog keeps one source per service): listed, never counted in its rollup.
    """
    extra = []
    for server, rows in sorted(lb.items()):
        if server in known_ids:
            continue
        first = rows[0]
        checked = first["state"] in CHECK_STATUS
        extra.append(
            {
                "id": server,
                "node": first["backend"],  # as the store keys balancer-only instances
                "address": first["address"],
                "port": first["port"],
                "health": member_health(first) if checked else "unknown",
                "maintenance": first["state"] == "maint",
                "maintenance_reason": None,
                "version": None,
                "tags": [],
                "meta": {"balancer": first["balancer"], "backend": first["backend"]},
                "node_meta": {},
                "checks": [],
                "lb": rows,
                "source": first["balancer"],
                "observed_at": first["observed_at"],
                "gone_at": None,
            }
        )
    return extra


def member_health(row: Mapping) -> str:
    """Name a member's health as a catalog instance's would read (maintenance apart)."""
    if row["state"] == "maint":
        return "maintenance"
    status = CHECK_STATUS.get(row["state"], "unknown")
    return "warning" if status == "passing" and row["transitional"] else status
