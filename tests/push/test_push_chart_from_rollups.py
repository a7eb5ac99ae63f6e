"""The Push chart's hour from the balancer rollups: the same per-service minutes the servers say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.collection.runner import RECORD_WRITERS
from app.models import BalancerRollup
from app.queries.push.chart import CHART_WINDOW
from app.queries.push.reading import members_of, read_push_connections, read_rollup_series
from app.store.catalog import apply_catalog_update
from collectors.balancers import BalancerServer, BalancerUpdate
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord

NOW = datetime(2026, 12, 2, 2, 0, 30, tzinfo=UTC)
# Backends "push" and "chat" are pools of one service each (named like them: no catalog match);
# "mixed" holds an instance of Consul's "alpha" and one of "beta".
MEMBERS = [
    ("push", "p1", "10.0.1.1"),
    ("push", "p2", "10.0.1.2"),
    ("chat", "c1", "10.0.2.1"),
    ("mixed", "m1", "10.0.3.1"),
    ("mixed", "m2", "10.0.3.2"),
]
SERVICE_OF = {"p1": "push", "p2": "push", "c1": "chat", "m1": "alpha", "m2": "beta"}


def sessions(n: int, server: str, minute: int) -> int:
    return (n * 7 + minute * 3 + len(server)) % 23


def seed(qd) -> None:
    records = {
        name: InstanceRecord(
            id=f"{name}-1",
            node="n1",
            address=address,
            port=80,
            checks=(CheckRecord("ws", "ws", "passing"),),
        )
        for name, address in (("alpha", "10.0.3.1"), ("beta", "10.0.3.2"))
    }
    with qd.store.session(write=True) as db:
        apply_catalog_update(
            db,
            "consul",
            CatalogUpdate(
                observed_at=NOW - timedelta(hours=2),
                services=tuple(ServiceRecord(n, instances=(r,)) for n, r in records.items()),
            ),
        )
    # Three passes a minute over 70 minutes: the chart's hour and some minutes before it.
    for minute in range(70, -1, -1):
        for second in (0, 20, 40):
            at = NOW.replace(second=second) - timedelta(minutes=minute)
            if at > NOW:
                continue
            servers = tuple(
                BalancerServer(
                    backend=backend,
                    server=server,
                    address=address,
                    port=80,
                    state="up",
                    status="UP",
                    check_status="L7OK",
                    sessions=sessions(n + second, server, minute),
                )
                for n, (backend, server, address) in enumerate(MEMBERS)
            )
            with qd.store.session(write=True) as db:
                RECORD_WRITERS[BalancerUpdate](
                    db, "edge", BalancerUpdate("edge", "haproxy", at, servers)
                )


def from_server_rows(qd, since: datetime) -> dict[str, list[tuple[datetime, float]]]:
    """Each service's minutes summed from the per-server rows, the way the chart means them."""
    per_service: dict[str, dict[datetime, float]] = {}
    with qd.store.session() as db:
        rows = db.execute(
            select(
                BalancerRollup.server, BalancerRollup.minute_at, BalancerRollup.sessions_last
            ).where(BalancerRollup.backend != "", BalancerRollup.minute_at >= since)
        )
        for server, minute_at, last in rows:
            minutes = per_service.setdefault(SERVICE_OF[server], {})
            minutes[minute_at] = minutes.get(minute_at, 0.0) + last
    return {service: sorted(minutes.items()) for service, minutes in per_service.items()}


def test_the_hour_per_service_equals_the_servers_rows_pools_and_shared_backends_alike(qd):
    seed(qd)
    since = NOW - CHART_WINDOW
    with qd.store.session() as db:
        sources = {}  # no source status: every number is stale, and still drawn from history
        push = read_push_connections(db, sources, NOW)
        series = read_rollup_series(db, members_of(push), since)
    expected = from_server_rows(qd, since)
    assert set(series) == {"push", "chat", "alpha", "beta"}
    assert series == expected
    assert len(series["push"]) == 60  # 01:01 .. 02:00, a point a minute
    assert series["push"][0][0] == since.replace(second=0) + timedelta(minutes=1)
