"""A store dropped without dispose() closes its pooled connections itself."""

from __future__ import annotations

import gc

import psycopg
from sqlalchemy import text

from app.replicas.locks import libpq_conninfo
from app.store.db import Store


def connections_to(url: str) -> int:
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def test_a_dropped_store_closes_its_pooled_connections(postgres_server):
    url = postgres_server.create_database()
    store = Store(url)
    with store.session() as db:
        assert db.execute(text("SELECT 1")).scalar() == 1
    assert connections_to(url) == 1  # back in the pool, still open

    del store, db
    gc.collect()  # psycopg would warn here of a connection deleted while open

    assert connections_to(url) == 0
