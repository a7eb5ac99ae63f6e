"""Balancer snapshots: replace the balancer's rows, roll sessions up by minute, match members."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.collection.runner import RECORD_WRITERS
from app.config import RetentionConfig
from app.models import (
    Balancer,
    BalancerMember,
    BalancerProxyState,
    BalancerRollup,
    HealthTransition,
    Instance,
    Service,
)
from app.queries.balancers import lb_rows_by_instance
from app.queries.services import service_topic
from app.store import Store
from app.store.catalog import apply_catalog_update
from app.store.retention import prune
from collectors.balancers import BalancerConnections, BalancerProxy, BalancerServer, BalancerUpdate
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord

T0 = datetime(2026, 12, 2, 1, 0, 5, tzinfo=UTC)


def server(name: str, port: int, sessions: int | None = 0, **fields) -> BalancerServer:
    values = {"state": "up", "status": "UP", "weight": 1, "check_status": "L7OK"} | fields
    return BalancerServer(
        backend=fields.pop("backend", "push"),
        server=name,
        address="127.0.0.1",
        port=port,
        sessions=sessions,
        **{k: v for k, v in values.items() if k != "backend"},
    )


def snapshot(at: datetime, *servers: BalancerServer, frontend: int = 0) -> BalancerUpdate:
    return BalancerUpdate(
        balancer="edge",
        kind="haproxy",
        observed_at=at,
        servers=servers,
        proxies=(
            BalancerProxy(name="fe", kind="frontend", status="OPEN", sessions=frontend),
            BalancerProxy(name="push", kind="backend", status="UP", sessions=frontend),
        ),
    )


def write(store: Store, upd: BalancerUpdate):
    with store.session(write=True) as db:
        return RECORD_WRITERS[BalancerUpdate](db, upd.balancer, upd)


def register_consul(store: Store, at: datetime, name: str, *instances: tuple[str, int]) -> None:
    records = tuple(
        InstanceRecord(
            id=f"{name}-{port}",
            node="n1",
            address=address,
            port=port,
            checks=(CheckRecord("http", "http", "passing"),),
        )
        for address, port in instances
    )
    with store.session(write=True) as db:
        apply_catalog_update(
            db,
            "consul",
            CatalogUpdate(observed_at=at, services=(ServiceRecord(name, instances=records),)),
        )


@pytest.fixture
def store(store_url):
    store = Store(store_url)
    yield store
    store.dispose()


def test_a_snapshot_replaces_the_members_and_proxies_held_for_its_balancer(store):
    write(store, snapshot(T0, server("s1", 9001, 3), server("s2", 9002, 1), frontend=4))
    written = write(store, snapshot(T0 + timedelta(seconds=10), server("s2", 9002, 5), frontend=5))

    with store.session() as db:
        members = db.execute(select(BalancerMember.server, BalancerMember.sessions)).all()
        balancer = db.scalar(select(Balancer))
        proxies = db.execute(select(BalancerProxyState.kind, BalancerProxyState.sessions)).all()
    assert members == [("s2", 5)]
    assert balancer.active == 5 and balancer.per_server_sessions
    assert balancer.observed_at == T0 + timedelta(seconds=10)
    assert sorted(proxies) == [("backend", 5), ("frontend", 5)]
    assert {"balancers", "push"} <= written.topics
    assert written.counts["members"] == 1


def test_an_unchanged_snapshot_writes_no_member_row_and_wakes_no_page(store):
    write(store, snapshot(T0, server("s1", 9001, 2), frontend=2))
    again = write(store, snapshot(T0 + timedelta(seconds=10), server("s1", 9001, 2), frontend=2))

    assert again.counts["rows_written"] == 0
    assert again.topics == frozenset()
    with store.session() as db:
        member = db.scalar(select(BalancerMember))
    assert member.changed_at == T0


def test_unknown_counts_stay_unknown_and_nginx_totals_are_kept(store):
    upd = BalancerUpdate(
        balancer="push-nginx",
        kind="nginx",
        observed_at=T0,
        servers=(
            BalancerServer(
                backend="push",
                server="127.0.0.1:9001",
                address="127.0.0.1",
                port=9001,
                state="up",
                weight=3,
                max_fails=2,
                fail_timeout_s=5.0,
            ),
        ),  # fmt: skip
        connections=BalancerConnections(
            active=7, accepts=10, handled=10, requests=30, reading=0, writing=1, waiting=6
        ),  # fmt: skip
        per_server_sessions=False,
    )
    write(store, upd)

    with store.session() as db:
        member = db.scalar(select(BalancerMember))
        balancer = db.scalar(select(Balancer))
        rollups = db.execute(select(BalancerRollup.backend, BalancerRollup.sessions_last)).all()
    assert member.sessions is None and member.weight == 3 and member.fail_timeout_s == 5.0
    assert (balancer.active, balancer.accepts, balancer.waiting) == (7, 10, 6)
    assert not balancer.per_server_sessions
    assert rollups == [("", 7)]  # the total only: no per-server figure was reported


def test_sessions_roll_up_into_one_row_per_member_per_minute_with_min_max_last(store):
    for second, sessions in ((5, 4), (15, 9), (25, 2), (35, 6)):
        at = T0.replace(second=second)
        write(store, snapshot(at, server("s1", 9001, sessions), frontend=sessions))
    write(store, snapshot(T0 + timedelta(minutes=1), server("s1", 9001, 1), frontend=1))

    with store.session() as db:
        rows = db.execute(
            select(
                BalancerRollup.backend,
                BalancerRollup.server,
                BalancerRollup.minute_at,
                BalancerRollup.sessions_min,
                BalancerRollup.sessions_max,
                BalancerRollup.sessions_last,
            ).order_by(BalancerRollup.minute_at, BalancerRollup.backend)
        ).all()
    minute = T0.replace(second=0)
    assert [tuple(r) for r in rows] == [
        ("", "", minute, 2, 9, 6),
        ("push", "s1", minute, 2, 9, 6),
        ("", "", minute + timedelta(minutes=1), 1, 1, 1),
        ("push", "s1", minute + timedelta(minutes=1), 1, 1, 1),
    ]


def test_unmatched_members_become_the_service_named_like_their_backend(store):
    register_consul(store, T0, "push", ("127.0.0.1", 9001))
    written = write(
        store,
        snapshot(T0, server("s1", 9001, 1), server("s2", 9002, 0, state="down", status="DOWN")),
    )

    with store.session() as db:
        services = {s.name: s for s in db.scalars(select(Service))}
        own = db.execute(
            select(Service.name, Instance.source_id, Instance.health)
            .join(Instance.service)
            .where(Service.source == "edge")
        ).all()
    # Backend "push" is Consul's service: its unmatched s2 cannot join it under another source.
    assert services["push"].source == "consul"
    assert own == []
    assert service_topic("push") in written.topics

    write(
        store,
        BalancerUpdate(
            balancer="edge",
            kind="haproxy",
            observed_at=T0 + timedelta(seconds=10),
            servers=(
                server("s1", 9001, 1),
                server("legacy1", 9100, 0, backend="legacy", state="down", status="DOWN"),
                server("legacy2", 9101, 0, backend="legacy", state="maint", status="MAINT"),
            ),
        ),
    )
    with store.session() as db:
        legacy = db.scalar(select(Service).where(Service.name == "legacy"))
        instances = {i.source_id: (i.health, i.address, i.port) for i in legacy.instances}
    assert legacy.source == "edge"
    assert instances == {
        "legacy1": ("critical", "127.0.0.1", 9100),
        "legacy2": ("maintenance", "127.0.0.1", 9101),
    }
    assert legacy.health == "critical"


def test_a_member_matched_by_name_is_not_a_service_of_its_own(store):
    register_consul(store, T0, "orders", ("10.0.0.9", 8000))
    member = replace(server("orders-8000", 9200, 0, backend="orders-be"), address="orders.internal")
    write(store, snapshot(T0, member))

    with store.session() as db:
        names = set(db.scalars(select(Service.name)))
    assert names == {"orders"}


def test_members_that_leave_the_balancer_leave_their_service(store):
    legacy = server("legacy1", 9100, 0, backend="legacy")
    write(store, snapshot(T0, legacy))
    write(store, snapshot(T0 + timedelta(seconds=10)))

    with store.session() as db:
        service = db.scalar(select(Service).where(Service.name == "legacy"))
        count = db.scalar(select(func.count()).select_from(BalancerMember))
    assert service.gone_at == T0 + timedelta(seconds=10)
    assert count == 0


def test_two_balancers_keep_their_own_rows(store):
    write(store, snapshot(T0, server("s1", 9001, 3)))
    other = replace(snapshot(T0, server("s1", 9001, 8)), balancer="edge-2")
    write(store, other)
    write(store, snapshot(T0 + timedelta(seconds=10)))  # edge now lists nothing

    with store.session() as db:
        rows = db.execute(
            select(Balancer.name, BalancerMember.sessions).join(
                BalancerMember, BalancerMember.balancer_id == Balancer.id
            )
        ).all()
    assert rows == [("edge-2", 8)]


def test_retention_deletes_rollups_older_than_samples_d_and_keeps_the_rest(store):
    old = T0 - timedelta(days=20)
    write(store, snapshot(old, server("s1", 9001, 3), frontend=3))
    write(store, snapshot(T0, server("s1", 9001, 4), frontend=4))

    with store.session(write=True) as db:
        removed = prune(db, RetentionConfig(samples_d=14), T0)
    with store.session() as db:
        minutes = set(db.scalars(select(BalancerRollup.minute_at)))
    assert removed["balancer_rollups"] == 2  # s1 and the balancer's total, 20 days ago
    assert minutes == {T0.replace(second=0)}


def test_an_unchanged_snapshot_still_follows_a_catalog_that_now_matches_its_member(store):
    write(store, snapshot(T0, server("p1", 9001, 0, backend="pay")))
    with store.session() as db:
        assert db.scalar(select(Service.source).where(Service.name == "pay")) == "edge"

    register_consul(store, T0, "payments", ("127.0.0.1", 9001))
    write(store, snapshot(T0 + timedelta(seconds=10), server("p1", 9001, 0, backend="pay")))

    with store.session() as db:
        pay = db.scalar(select(Service).where(Service.name == "pay"))
    assert pay.gone_at == T0 + timedelta(seconds=10)  # p1 is Consul's payments instance now


def test_lb_rows_say_unknown_sessions_for_nginx_and_stale_for_a_balancer_not_configured(store):
    register_consul(store, T0, "push", ("127.0.0.1", 9001))
    upd = BalancerUpdate(
        balancer="push-nginx",
        kind="nginx",
        observed_at=T0,
        servers=(
            BalancerServer(
                backend="push",
                server="127.0.0.1:9001",
                address="127.0.0.1",
                port=9001,
                state="up",
                status="up",
                weight=2,
            ),
        ),  # fmt: skip
        connections=BalancerConnections(active=3),
        per_server_sessions=False,
    )
    write(store, upd)

    with store.session() as db:
        rows = lb_rows_by_instance(db, "push", {}, T0 + timedelta(seconds=30))
    [row] = rows["push-9001"]
    assert (row["balancer"], row["kind"], row["weight"]) == ("push-nginx", "nginx", 2)
    assert row["sessions"] is None  # nginx OSS counts no connections per server: not 0
    assert row["stale"] is True and row["age_s"] == 30.0


def test_a_catalog_source_takes_over_a_service_a_balancer_made_before_it_reported(store):
    write(store, snapshot(T0, server("s1", 9001, 2, backend="push")))  # HAProxy answers first
    register_consul(store, T0 + timedelta(seconds=1), "push", ("127.0.0.1", 9001))
    write(store, snapshot(T0 + timedelta(seconds=10), server("s1", 9001, 2, backend="push")))

    with store.session() as db:
        push = db.scalar(select(Service).where(Service.name == "push"))
        live = {(i.source, i.source_id) for i in push.instances if i.gone_at is None}
        rows = lb_rows_by_instance(db, "push", {}, T0 + timedelta(seconds=10))
    assert push.source == "consul" and push.gone_at is None
    assert live == {("consul", "push-9001")}
    assert set(rows) == {"push-9001"}  # the member is Consul's instance's now
    # The balancer's placeholder for the same server goes without a "left the catalog" trace.
    with store.session() as db:
        push = db.scalar(select(Service).where(Service.name == "push"))
        assert [(i.source, i.source_id) for i in push.instances] == [("consul", "push-9001")]
        transitions = db.scalars(
            select(HealthTransition).where(HealthTransition.service_id == push.id)
        ).all()
        assert [t.to_state for t in transitions] == []


def test_servers_named_alike_in_two_backends_are_two_instances_and_a_server_may_move(store):
    # HAProxy names a server uniquely within its backend only: push/s1 and chat/s1 are two.
    write(
        store,
        BalancerUpdate(
            balancer="edge",
            kind="haproxy",
            observed_at=T0,
            servers=(
                server("s1", 9301, 1, backend="push"),
                server("s1", 9401, 2, backend="chat"),
            ),
        ),
    )
    # s1 of push moves to chat under a new name, and chat's s1 moves to push.
    write(
        store,
        BalancerUpdate(
            balancer="edge",
            kind="haproxy",
            observed_at=T0 + timedelta(seconds=10),
            servers=(
                server("s1", 9401, 2, backend="push"),
                server("s1", 9301, 1, backend="chat"),
                server("s2", 9501, 0, backend="chat"),
            ),
        ),
    )
    with store.session() as db:
        live = db.execute(
            select(Service.name, Instance.source_id, Instance.port)
            .join(Instance.service)
            .where(Service.source == "edge", Instance.gone_at.is_(None))
            .order_by(Service.name, Instance.source_id)
        ).all()
    assert live == [("chat", "s1", 9301), ("chat", "s2", 9501), ("push", "s1", 9401)]
