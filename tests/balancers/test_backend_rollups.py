"""Per-backend minute rollups: written by the balancer pass, always the sum of the servers' rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.collection.runner import RECORD_WRITERS
from app.config import RetentionConfig
from app.models import BalancerBackendRollup, BalancerRollup
from app.store import Store
from app.store.retention import prune
from collectors.balancers import BalancerProxy, BalancerServer, BalancerUpdate

T0 = datetime(2026, 12, 2, 1, 0, 5, tzinfo=UTC)


@pytest.fixture
def store(store_url):
    store = Store(store_url)
    yield store
    store.dispose()


def server(backend: str, name: str, sessions: int | None) -> BalancerServer:
    return BalancerServer(backend=backend, server=name, address="127.0.0.1",
                          port=9000 + int(name.lstrip("s")), state="up", status="UP",
                          check_status="L7OK", weight=1, sessions=sessions)  # fmt: skip


def write(store: Store, at: datetime, servers: list[BalancerServer], balancer: str = "edge"):
    total = sum(s.sessions or 0 for s in servers)
    upd = BalancerUpdate(balancer, "haproxy", at, tuple(servers),
                         (BalancerProxy(name="fe", kind="frontend", status="OPEN",
                                        sessions=total),))  # fmt: skip
    with store.session(write=True) as db:
        RECORD_WRITERS[BalancerUpdate](db, balancer, upd)


def backend_rows(store: Store) -> dict[tuple, tuple[int, int]]:
    """(balancer, backend, minute) -> (sessions_last, servers) as the pass wrote them."""
    t = BalancerBackendRollup
    with store.session() as db:
        rows = db.execute(select(t.balancer, t.backend, t.minute_at, t.sessions_last, t.servers))
        return {(b, be, m): (last, n) for b, be, m, last, n in rows}


def summed_server_rows(store: Store) -> dict[tuple, tuple[int, int]]:
    """The same figures summed from the per-server rows (the balancer's total row left out)."""
    t = BalancerRollup
    with store.session() as db:
        rows = db.execute(
            select(t.balancer, t.backend, t.minute_at, func.sum(t.sessions_last), func.count())
            .where(t.backend != "")
            .group_by(t.balancer, t.backend, t.minute_at)
        )
        return {(b, be, m): (int(last), n) for b, be, m, last, n in rows}


def test_a_backends_minute_is_the_sum_of_its_servers_last_counts(store):
    minute = T0.replace(second=0)
    write(store, T0, [server("push", "s1", 3), server("push", "s2", 4), server("chat", "s3", 1)])
    write(store, T0 + timedelta(seconds=10),
          [server("push", "s1", 7), server("push", "s2", 4), server("chat", "s3", 1)])  # fmt: skip
    write(store, T0 + timedelta(seconds=60), [server("push", "s1", 2), server("chat", "s3", 5)])

    assert backend_rows(store) == {
        ("edge", "push", minute): (11, 2),
        ("edge", "chat", minute): (1, 1),
        # s2 left: the new minute sums only the servers the balancer still lists.
        ("edge", "push", minute + timedelta(minutes=1)): (2, 1),
        ("edge", "chat", minute + timedelta(minutes=1)): (5, 1),
    }
    assert backend_rows(store) == summed_server_rows(store)


def test_every_kind_of_change_within_and_across_minutes_keeps_the_sums_equal(store):
    """Counts rising and falling, servers joining and leaving, counts going missing."""
    rng = random.Random(7)
    backends = ["push", "chat", "feed"]
    fleet = {f"s{n}": (rng.choice(backends), rng.randint(0, 50)) for n in range(1, 31)}
    names = iter(range(31, 1000))
    at = T0
    for _ in range(45):  # passes 10-20 s apart: several of them in each of four minutes
        for name in rng.sample(sorted(fleet), 8):
            backend, sessions = fleet[name]
            fleet[name] = (backend, max(0, sessions + rng.randint(-10, 10)))
        if rng.random() < 0.3:  # a new server joins
            fleet[f"s{next(names)}"] = (rng.choice(backends), rng.randint(0, 20))
        if rng.random() < 0.3 and len(fleet) > 5:  # a server leaves
            fleet.pop(rng.choice(sorted(fleet)))
        servers = [server(backend, name, sessions) for name, (backend, sessions) in fleet.items()]
        if rng.random() < 0.2:  # one server stops reporting its count for a pass
            servers[0] = server(servers[0].backend, servers[0].server, None)
        write(store, at, servers)
        assert backend_rows(store) == summed_server_rows(store)
        at += timedelta(seconds=rng.randint(10, 20))
    assert len({minute for _, _, minute in backend_rows(store)}) >= 4


def test_two_balancers_with_the_same_backend_name_keep_their_own_sums(store):
    write(store, T0, [server("push", "s1", 3)])
    write(store, T0, [server("push", "s1", 8), server("push", "s2", 1)], balancer="edge-2")
    write(store, T0 + timedelta(seconds=10), [server("push", "s1", 5)])

    minute = T0.replace(second=0)
    assert backend_rows(store) == {
        ("edge", "push", minute): (5, 1),
        ("edge-2", "push", minute): (9, 2),
    }
    assert backend_rows(store) == summed_server_rows(store)


def test_retention_deletes_backend_minutes_exactly_as_old_as_the_server_rows_it_deletes(store):
    old = T0 - timedelta(days=20)
    write(store, old, [server("push", "s1", 3), server("chat", "s2", 1)])
    write(store, T0 - timedelta(days=13), [server("push", "s1", 6)])
    write(store, T0, [server("push", "s1", 4)])

    with store.session(write=True) as db:
        removed = prune(db, RetentionConfig(samples_d=14), T0)
    assert removed["balancer_backend_rollups"] == 2  # push and chat, 20 days ago
    assert {minute for _, _, minute in backend_rows(store)} == {
        (T0 - timedelta(days=13)).replace(second=0),
        T0.replace(second=0),
    }
    assert backend_rows(store) == summed_server_rows(store)

    with store.session(write=True) as db:
        assert "balancer_backend_rollups" not in prune(
            db, RetentionConfig(samples_d=0), T0 + timedelta(days=99)
        )
    assert len(backend_rows(store)) == 2
