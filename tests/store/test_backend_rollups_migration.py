"""Migration 0009 (on 0010) sums the held server rollups per backend; downgrade loses no row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, text

from app.collection.runner import RECORD_WRITERS
from app.models import Balancer, BalancerRollup
from app.store import Store, migrate
from app.store.db import create_store_engine
from collectors.balancers import BalancerServer, BalancerUpdate

MINUTE = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
# (balancer, backend, server, minutes after MINUTE, min, max, last); backend "" is the total.
SERVER_ROWS = [
    ("edge", "push", "s1", 0, 1, 9, 4),
    ("edge", "push", "s2", 0, 2, 2, 2),
    ("edge", "push", "s1", 1, 3, 5, 5),
    ("edge", "chat", "s3", 0, 0, 7, 7),
    ("edge", "", "", 0, 3, 18, 13),
    ("edge-2", "push", "s1", 0, 6, 6, 6),
]
SUMS = {
    ("edge", "push", 0): (6, 2),
    ("edge", "push", 1): (5, 1),
    ("edge", "chat", 0): (7, 1),
    ("edge-2", "push", 0): (6, 1),
}


def _fresh_url(request, store_url: str, tmp_path) -> str:
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'backend-rollups.db'}"
    return request.getfixturevalue("postgres_server").create_database()


def _server_rows(db) -> list[tuple]:
    rows = db.execute(
        text(
            "SELECT balancer, backend, server, minute_at, sessions_min, sessions_max, "
            "sessions_last FROM balancer_rollups ORDER BY id"
        )
    )
    return [tuple(row) for row in rows]


def _backend_sums(db) -> dict[tuple, tuple[int, int]]:
    rows = db.execute(
        text(
            "SELECT balancer, backend, minute_at, sessions_last, servers "
            "FROM balancer_backend_rollups"
        )
    )
    return {(b, be, _minutes(m)): (last, n) for b, be, m, last, n in rows}


def _minutes(at) -> int:
    if isinstance(at, str):  # SQLite answers raw SQL with text
        at = datetime.fromisoformat(at)
    return int((at.replace(tzinfo=UTC) - MINUTE).total_seconds() // 60)


def test_upgrade_sums_the_held_minutes_and_downgrade_keeps_every_server_row(
    request, store_url, tmp_path
):
    url = _fresh_url(request, store_url, tmp_path)
    migrate.upgrade(url, "0010")
    engine = create_store_engine(url)
    try:
        # Written the way the store writes them (the model's table, its timestamp format).
        with engine.begin() as db:
            db.execute(
                BalancerRollup.__table__.insert(),
                [
                    {
                        "balancer": balancer,
                        "backend": backend,
                        "server": server,
                        "minute_at": MINUTE + timedelta(minutes=m),
                        "sessions_min": low,
                        "sessions_max": high,
                        "sessions_last": last,
                    }
                    for balancer, backend, server, m, low, high, last in SERVER_ROWS
                ],
            )
            db.execute(
                Balancer.__table__.insert(),
                {"name": "edge", "kind": "haproxy", "observed_at": MINUTE, "changed_at": MINUTE},
            )
        with engine.connect() as db:
            before = _server_rows(db)

        migrate.upgrade(url, "0009")
        with engine.connect() as db:
            assert _backend_sums(db) == SUMS
            assert _server_rows(db) == before

        # The pass goes on from the sums the upgrade wrote: s4 joins edge/chat in minute 0.
        store = Store(url)
        try:
            upd = BalancerUpdate(
                "edge",
                "haproxy",
                MINUTE + timedelta(seconds=30),
                (
                    BalancerServer(
                        backend="chat",
                        server="s4",
                        address="10.0.0.4",
                        port=1,
                        state="up",
                        status="UP",
                        sessions=3,
                    ),
                ),
            )
            with store.session(write=True) as db:
                RECORD_WRITERS[BalancerUpdate](db, "edge", upd)
        finally:
            store.dispose()
        with engine.connect() as db:
            assert _backend_sums(db)[("edge", "chat", 0)] == (10, 2)
            after_pass = _server_rows(db)
        assert len(after_pass) == len(before) + 1  # s4's minute (no frontend: no total)

        migrate.downgrade(url, "0010")
        assert "balancer_backend_rollups" not in inspect(engine).get_table_names()
        with engine.connect() as db:
            assert _server_rows(db) == after_pass

        migrate.upgrade(url, "0009")
        with engine.connect() as db:
            assert _backend_sums(db) == {**SUMS, ("edge", "chat", 0): (10, 2)}
    finally:
        engine.dispose()
