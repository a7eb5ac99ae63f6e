"""Read the push counts' inputs from the store: balancer members and totals, the catalog.

Members are tied to catalog instances the way the balancer store matches them (address:port,
else name; DESIGN §6); a member that matches nothing is the instance named like the server, of
the service named like its backend. A balancer whose source is not fresh has stale numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session

from app.config import PrometheusConfig
from app.models import (
    Balancer,
    BalancerBackendRollup,
    BalancerMember,
    BalancerRollup,
    Instance,
    Service,
)
from app.queries.metrics import push_gauge_by_instance
from app.queries.push.chart import (
    CHART_WINDOW,
    ConnectionsChart,
    build_chart,
    with_current_point,
)
from app.queries.push.counts import PushConnections, count_connections
from app.queries.push.drains import DRAIN_RATE_WINDOW
from app.queries.push.inputs import (
    DRAINING_STATES,
    BalancerTotal,
    CatalogMember,
    GaugeCount,
    MemberCount,
)
from app.queries.sources import SourceView
from app.store.balancers import CatalogMatch
from collectors.base import SourceUnavailable
from collectors.prometheus import PrometheusReader, push_connections_by_service

balancers_t = Balancer.__table__
members_t = BalancerMember.__table__
rollups_t = BalancerRollup.__table__
backend_rollups_t = BalancerBackendRollup.__table__
instances_t = Instance.__table__
services_t = Service.__table__

# The balancer rollups are kept per minute.
ROLLUP_STEP_S = 60

History = dict[tuple[str, str, str], list[tuple[datetime, float]]]


def is_stale(sources: Mapping[str, SourceView], name: str) -> bool:
    """Whether a source's data may be out of date (unknown and disabled sources included)."""
    view = sources.get(name)
    return view is None or view.status != "ok"


def read_catalog(db: Session) -> list[CatalogMember]:
    """The live catalog instances, with what ties a gauge label or a member to them."""
    rows = db.execute(
        select(
            services_t.c.name,
            services_t.c.source,
            instances_t.c.source_id,
            instances_t.c.address,
            instances_t.c.port,
            instances_t.c.maintenance,
        )
        .join(services_t, services_t.c.id == instances_t.c.service_id)
        .where(instances_t.c.gone_at.is_(None), services_t.c.gone_at.is_(None))
        .order_by(services_t.c.name, instances_t.c.source_id)
    )
    return [
        CatalogMember(name, source_id, address or "", port or 0, bool(maintenance), source)
        for name, source, source_id, address, port, maintenance in rows
    ]


def _match_for(catalog: list[CatalogMember], balancer: str) -> CatalogMatch:
    """Index the catalog as the balancer store does, leaving out the balancer's own services."""
    by_address: dict[tuple[str, int], tuple[str, str]] = {}
    by_name: dict[str, tuple[str, str]] = {}
    for m in catalog:
        if m.source == balancer:
            continue
        if m.address and m.port:
            by_address.setdefault((m.address, m.port), (m.service, m.instance))
        by_name.setdefault(m.instance, (m.service, m.instance))
    return CatalogMatch(by_address, by_name)


def read_members(
    db: Session, sources: Mapping[str, SourceView], catalog: list[CatalogMember]
) -> list[MemberCount]:
    """Every balancer member with its session count, matched to its service and instance."""
    balancers = {
        row.id: row
        for row in db.execute(
            select(
                balancers_t.c.id, balancers_t.c.name, balancers_t.c.kind, balancers_t.c.observed_at
            )  # fmt: skip
        )
    }
    # nginx has no lastchg: a member's row changes only when its configuration does.
    nginx = [i for i, b in balancers.items() if b.kind == "nginx"]
    changed_at = {}
    if nginx:
        changed_at = {
            (row.balancer_id, row.backend, row.server): row.changed_at
            for row in db.execute(
                select(
                    members_t.c.balancer_id,
                    members_t.c.backend,
                    members_t.c.server,
                    members_t.c.changed_at,
                ).where(members_t.c.balancer_id.in_(nginx))  # fmt: skip
            )
        }
    rows = db.execute(
        select(
            members_t.c.balancer_id,
            members_t.c.backend,
            members_t.c.server,
            members_t.c.address,
            members_t.c.port,
            members_t.c.state,
            members_t.c.status,
            members_t.c.sessions,
            members_t.c.state_changed_at,
        ).order_by(members_t.c.balancer_id, members_t.c.backend, members_t.c.server)
    )
    matches = {i: _match_for(catalog, b.name) for i, b in balancers.items()}
    stale = {i: is_stale(sources, b.name) for i, b in balancers.items()}
    members = []
    for balancer_id, backend, server, address, port, state, status, sessions, since in rows:
        balancer = balancers[balancer_id]
        found = matches[balancer_id].find(address, port, server)
        service, instance = found if found else (backend, server)
        # HAProxy: lastchg, stored as a time; nginx: when its configuration last changed.
        if since is None:
            since = changed_at.get((balancer_id, backend, server))
        members.append(
            MemberCount(
                balancer.name,
                balancer.kind,
                backend,
                server,
                service,
                instance,
                state,
                status,
                sessions,
                balancer.observed_at,
                stale[balancer_id],
                since,
            )  # fmt: skip
        )
    members.sort(key=lambda m: (m.balancer, m.backend, m.server))
    return members


def read_balancer_totals(db: Session, sources: Mapping[str, SourceView]) -> list[BalancerTotal]:
    """Each balancer's own connection total."""
    rows = db.execute(
        select(
            balancers_t.c.name,
            balancers_t.c.kind,
            balancers_t.c.active,
            balancers_t.c.per_server_sessions,
            balancers_t.c.observed_at,
        ).order_by(balancers_t.c.name)
    )
    return [
        BalancerTotal(name, kind, active, bool(per_server), observed_at, is_stale(sources, name))
        for name, kind, active, per_server, observed_at in rows
    ]


def read_drain_history(db: Session, members: list[MemberCount], now: datetime) -> History:
    """The stored minutes of the draining members, as (time, connections) oldest first.

    A minute's highest count stands at its start (a drain only loses connections), its last
    count at its end; the member's current count is the newest point.
    """
    draining = [m for m in members if m.state in DRAINING_STATES]
    if not draining:
        return {}
    # Only the minutes around each start and the latest ones are read (drains.py needs no more).
    # One SELECT per window (UNION ALL): each one is a range of the (balancer, minute_at) index,
    # where an OR of the windows would have SQLite read every minute of the balancer.
    recent = now - DRAIN_RATE_WINDOW - timedelta(minutes=2)
    starts = sorted({m.state_since for m in draining if m.state_since and m.state_since < recent})
    windows = [rollups_t.c.minute_at >= recent] + [
        rollups_t.c.minute_at.between(low, high) for low, high in _merged_windows(starts)
    ]
    balancers = sorted({m.balancer for m in draining})
    servers = sorted({m.server for m in draining})
    columns = (
        rollups_t.c.balancer,
        rollups_t.c.backend,
        rollups_t.c.server,
        rollups_t.c.minute_at,
        rollups_t.c.sessions_max,
        rollups_t.c.sessions_last,
    )
    parts = [
        select(*columns).where(
            rollups_t.c.balancer.in_(balancers), rollups_t.c.server.in_(servers), window
        )
        for window in windows
    ]
    query = union_all(*parts).subquery()
    rows = db.execute(select(query).order_by(query.c.minute_at))
    wanted = {(m.balancer, m.backend, m.server) for m in draining}
    history: History = {}
    for balancer, backend, server, minute_at, high, last in rows:
        key = (balancer, backend, server)
        if key not in wanted:
            continue
        end = min(minute_at + timedelta(minutes=1), now)
        history.setdefault(key, []).extend([(minute_at, float(high)), (end, float(last))])
    for m in draining:
        if m.sessions is not None:
            history.setdefault((m.balancer, m.backend, m.server), []).append(
                (m.observed_at, float(m.sessions))
            )
    return history


def _merged_windows(starts: list[datetime]) -> list[tuple[datetime, datetime]]:
    """The two minutes before each drain start, overlapping ones joined (no row read twice)."""
    merged: list[tuple[datetime, datetime]] = []
    for start in starts:
        low = start - timedelta(minutes=2)
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], start)
        else:
            merged.append((low, start))
    return merged


def read_rollup_series(
    db: Session, members: list[MemberCount], since: datetime
) -> dict[str, list[tuple[datetime, float]]]:
    """Connections per service per minute from the balancer rollups (the minute's last count).

    A backend whose members all belong to one service (the usual pool) is read from its
    per-minute sums (one row a minute, written with the servers' rows); the members of a
    backend shared by several services are read one by one.
    """
    owners: dict[tuple[str, str], set[str]] = {}
    service_of_member: dict[tuple[str, str, str], str] = {}
    for m in members:
        if m.sessions is None:
            continue
        owners.setdefault((m.balancer, m.backend), set()).add(m.service)
        service_of_member[(m.balancer, m.backend, m.server)] = m.service
    pools = {key: next(iter(found)) for key, found in owners.items() if len(found) == 1}
    shared = sorted({key[1] for key, found in owners.items() if len(found) > 1})
    per_minute: dict[str, dict[datetime, float]] = {}

    def add(service: str | None, minute_at: datetime, value) -> None:
        if service is not None:
            minutes = per_minute.setdefault(service, {})
            minutes[minute_at] = minutes.get(minute_at, 0.0) + float(value)

    if pools:
        rows = db.execute(
            select(
                backend_rollups_t.c.balancer,
                backend_rollups_t.c.backend,
                backend_rollups_t.c.minute_at,
                backend_rollups_t.c.sessions_last,
            ).where(backend_rollups_t.c.minute_at >= since)
        )
        for balancer, backend, minute_at, total in rows:
            add(pools.get((balancer, backend)), minute_at, total)
    if shared:
        rows = db.execute(
            select(
                rollups_t.c.balancer,
                rollups_t.c.backend,
                rollups_t.c.server,
                rollups_t.c.minute_at,
                rollups_t.c.sessions_last,
            ).where(rollups_t.c.minute_at >= since, rollups_t.c.backend.in_(shared))
        )
        for balancer, backend, server, minute_at, last in rows:
            if (balancer, backend) not in pools:
                add(service_of_member.get((balancer, backend, server)), minute_at, last)
    return {service: sorted(minutes.items()) for service, minutes in per_minute.items()}


def read_gauges(db: Session, sources: Mapping[str, SourceView]) -> list[GaugeCount]:
    """The stored Prometheus push gauge of every instance."""
    return [
        GaugeCount(r.service, r.instance, r.connections, r.observed_at, is_stale(sources, r.source))
        for r in push_gauge_by_instance(db)
    ]


def read_push_connections(
    db: Session,
    sources: Mapping[str, SourceView],
    now: datetime,
    *,
    gauge_configured: bool = False,
) -> PushConnections:
    """Count push connections from everything the store holds."""
    catalog = read_catalog(db)
    members = read_members(db, sources, catalog)
    return count_connections(
        members,
        read_gauges(db, sources),
        read_balancer_totals(db, sources),
        catalog,
        read_drain_history(db, members, now),
        gauge_configured=gauge_configured,
    )


def members_of(push: PushConnections) -> list[MemberCount]:
    """The balancer members behind the counts."""
    return [m for s in push.services for i in s.instances for m in i.members]


def read_chart(
    db: Session, push: PushConnections, now: datetime, prometheus: PrometheusConfig | None
) -> ConnectionsChart:
    """The last hour, ending with the counts of now: from Prometheus, else the rollups.

    Prometheus keeps the gauge's history, so it is asked (one range query, its own short
    timeout); when it is not configured, has no push series or does not answer, the balancer
    rollups draw the hour, and the chart says why.
    """
    note = ""
    if prometheus is not None:
        reader = PrometheusReader(prometheus.url, prometheus.range_timeout_s)
        try:
            series = push_connections_by_service(reader, prometheus, now, CHART_WINDOW)
        except SourceUnavailable as exc:
            note = f"Prometheus could not draw the hour ({exc.reason}); the balancer rollups do."
        else:
            if series:
                step = max(int(CHART_WINDOW.total_seconds() // 60), 1)
                chart = build_chart(series, now=now, step_s=step, source="prometheus")
                return with_current_point(chart, push, now)
            note = (
                f"Prometheus has no {prometheus.push_gauge} series; the balancer rollups draw it."
            )
        finally:
            reader.close()
    series = read_rollup_series(db, members_of(push), now - CHART_WINDOW)
    chart = build_chart(series, now=now, step_s=ROLLUP_STEP_S, source="rollups", note=note)
    return with_current_point(chart, push, now)
