"""A pass whose run record the store refuses is shown from memory, then written once it can be."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from app.auth.accounts import create_token
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.collection.unrecorded import UnrecordedRuns
from app.config import ConsulConfig, StaticServiceConfig
from app.factory import create_app
from app.models import CollectorRun

FILLER_BEFORE = datetime(2001, 1, 1, tzinfo=UTC)
STATIC = (StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),)


def _fill_sqlite_to_the_brim(qd, url: str) -> Callable[[], None]:
    """Cap the store at its size and fill the run table's last page: real SQLITE_FULL."""

    def cap(dbapi_connection, _record):
        (pages,) = dbapi_connection.execute("PRAGMA page_count").fetchone()
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    filler = sqlite3.connect(Path(make_url(url).database), isolation_level=None)
    try:
        cap(filler, None)
        while True:  # rows no bigger than a real run's, older than any: the last page fills
            try:
                filler.execute(
                    "INSERT INTO collector_runs (source, kind, started_at, duration_s, ok, error,"
                    " counts) VALUES ('static', 'static', '2000-01-01 00:00:00.000000', 0, 1, '',"
                    " '{}')"
                )
            except sqlite3.OperationalError as exc:
                assert exc.sqlite_errorname == "SQLITE_FULL"
                break
    finally:
        filler.close()
    event.listen(qd.store.engine, "connect", cap)
    qd.store.engine.dispose()

    def restore():
        event.remove(qd.store.engine, "connect", cap)
        qd.store.engine.dispose()

    return restore


def _make_postgresql_read_only(qd, url: str, postgres_server) -> Callable[[], None]:
    """ALTER DATABASE … SET default_transaction_read_only, and end the app's sessions."""
    database = make_url(url).database
    conninfo = postgres_server.url.set(drivername="postgresql").render_as_string(
        hide_password=False
    )

    def alter(clause: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" {clause}')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        qd.store.engine.dispose()

    alter("SET default_transaction_read_only = on")
    return lambda: alter("RESET default_transaction_read_only")


def refuse_writes(request, qd, url: str) -> Callable[[], None]:
    """Make the real store refuse writes; return what puts it back."""
    if url.startswith("sqlite"):
        return _fill_sqlite_to_the_brim(qd, url)
    return _make_postgresql_read_only(qd, url, request.getfixturevalue("postgres_server"))


def _api(qd):
    with qd.store.session() as db:
        token = create_token(db, "sources-reader", "viewer")
    client = create_app(qd=qd).test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def get(path: str):
        response = client.get(path, headers=auth)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    return get


def _sources(get) -> dict:
    return {s["name"]: s for s in get("/api/v1/sources").json["sources"]}


def _runs(qd, source: str) -> list[CollectorRun]:
    """The source's recorded runs, without the filler rows (dated 2000)."""
    with qd.store.session() as db:
        query = select(CollectorRun).where(
            CollectorRun.source == source, CollectorRun.started_at > FILLER_BEFORE
        )
        return list(db.scalars(query.order_by(CollectorRun.started_at)))


def test_a_pass_the_store_cannot_record_is_shown_from_memory_and_written_when_it_is_back(
    request, make_qd, store_url
):
    qd = make_qd(url=store_url, static_services=STATIC)
    collector = next(s.collector for s in configured_sources(qd.config, qd.clock))
    get = _api(qd)
    assert run_pass(qd, collector).ok
    before = _sources(get)["static"]
    assert before["status"] == "ok" and before["unrecorded_runs"] == 0
    assert before["store_error"] is None

    restore = refuse_writes(request, qd, store_url)
    try:
        first = run_pass(qd, collector)
        assert not first.ok and first.error.startswith("could not store what was collected")
        shown = _sources(get)["static"]
        assert shown["status"] == "error" and shown["error_kind"] == "store"
        assert shown["store_error"].startswith(
            ("OperationalError: database or disk is full", "ReadOnlySqlTransaction: cannot")
        ), shown["store_error"]
        assert shown["last_error"] == (
            f"the store could not be written: {shown['store_error']}; "
            "what the source returned is not stored"
        )
        assert shown["last_run_at"] > before["last_run_at"] == before["last_success_at"]
        assert shown["last_success_at"] == before["last_success_at"]
        assert shown["unrecorded_runs"] == 1
        page = get("/sources").get_data(as_text=True)
        assert "the store could not be written: " in page and 'data-source-status="error"' in page
        orders = get("/api/v1/services").json["services"][0]
        assert orders["name"] == "orders" and orders["stale"] is True

        assert not run_pass(qd, collector).ok
        assert _sources(get)["static"]["unrecorded_runs"] == 2
        assert len(_runs(qd, "static")) == 1  # nothing of the two reached the store
    finally:
        restore()

    assert run_pass(qd, collector).ok
    after = _sources(get)["static"]
    assert after["status"] == "ok" and after["unrecorded_runs"] == 0
    assert after["store_error"] is None and after["error_kind"] is None
    assert after["last_error"].startswith("could not store what was collected: ")
    runs = _runs(qd, "static")
    assert [run.ok for run in runs] == [True, False, False, True]
    assert all(run.error.startswith("could not store what was collected: ") for run in runs[1:3])


def test_a_source_failing_while_the_store_is_down_shows_both_and_memory_stays_bounded(
    request, make_qd, sqlite_url
):
    qd = make_qd(consul=ConsulConfig(url="http://127.0.0.1:1", token_env="", wait_s=1))
    qd.unrecorded = UnrecordedRuns(per_source=2)
    collector = next(s.collector for s in configured_sources(qd.config, qd.clock))
    get = _api(qd)
    _sources(get)  # the token's first use is recorded while the store still takes writes
    restore = refuse_writes(request, qd, sqlite_url)
    try:
        for _ in range(3):
            assert not run_pass(qd, collector).ok
        shown = _sources(get)["consul"]
        assert shown["status"] == "error" and shown["unrecorded_runs"] == 3  # 2 held, 1 dropped
        assert shown["last_error"].startswith(
            "the store could not be written: OperationalError: database or disk is full; "
            "the pass failed too: "
        )
        assert "127.0.0.1:1" in shown["last_error"]
    finally:
        restore()
        collector.close()
    assert not run_pass(qd, collector).ok  # Consul is still down; now the store records it
    shown = _sources(get)["consul"]
    assert shown["error_kind"] == "unavailable" and shown["unrecorded_runs"] == 0
    assert len(_runs(qd, "consul")) == 3  # the two held, then this one
