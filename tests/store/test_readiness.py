"""/readyz says whether the store takes a write, and why not, against real store faults."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.engine import make_url

from app.factory import create_app
from app.models import utcnow
from app.store import migrate
from tests.fixtures.postgres import running_postgres
from tests.fixtures.processes import (
    ServerProcess,
    free_port,
    http_get,
    require_binary,
    short_temp_dir,
    unprivileged_user,
)


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database)


def _limit_pages(qd) -> None:
    """Cap the app's new connections at the store's current size: a real SQLITE_FULL."""

    def cap(dbapi_connection, _record):
        (pages,) = dbapi_connection.execute("PRAGMA page_count").fetchone()
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    event.listen(qd.store.engine, "connect", cap)
    qd.store.engine.dispose()
    return cap


def test_a_writable_store_is_ready_and_probing_leaves_nothing_behind(make_qd, store_url):
    qd = make_qd(url=store_url)
    client = create_app(qd=qd).test_client()
    with qd.store.engine.connect() as connection:
        version = connection.scalar(text("SELECT version_num FROM alembic_version"))
    size = _sqlite_path(store_url).stat().st_size if store_url.startswith("sqlite") else None
    for _ in range(20):
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json == {
            "status": "ok",
            "store": {"backend": qd.store.dialect, "state": "ok"},
        }
    with qd.store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(text("alembic_version"))) == 1
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == version
        connection.exec_driver_sql("SELECT 1")
    assert "quarterdeck_write_probe" not in inspect(qd.store.engine).get_table_names()
    if size is not None:
        assert _sqlite_path(store_url).stat().st_size == size


def test_a_full_sqlite_store_is_not_ready_and_says_so_until_it_has_room_again(make_qd):
    qd = make_qd()
    client = create_app(qd=qd).test_client()
    cap = _limit_pages(qd)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["store"] == {"backend": "sqlite", "state": "full"}
    assert response.json["reason"] == "the store is full: database or disk is full"
    assert client.get("/healthz").status_code == 200

    event.remove(qd.store.engine, "connect", cap)
    qd.store.engine.dispose()
    assert client.get("/readyz").json["status"] == "ok"


def test_a_write_lock_held_elsewhere_is_busy_then_not_ready_once_held_past_the_writers_wait(
    make_qd, sqlite_url
):
    qd = make_qd()
    client = create_app(qd=qd).test_client()
    holder = sqlite3.connect(_sqlite_path(sqlite_url), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        first = client.get("/readyz")
        assert first.status_code == 200 and first.json["status"] == "busy"
        assert first.json["store"]["state"] == "busy"
        assert first.json["reason"].startswith("the store is busy: another writer held the lock")
        since = first.json["store"]["busy_since"]

        later = utcnow() + timedelta(seconds=11)
        qd.store.write_probe.clock = lambda: later  # the lock is still held 11 s on
        second = client.get("/readyz")
        assert second.status_code == 503 and second.json["status"] == "unavailable"
        assert second.json["store"]["busy_since"] == since
        assert "busy at every probe for 11 s" in second.json["reason"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    qd.store.write_probe.clock = utcnow
    assert client.get("/readyz").json == {
        "status": "ok",
        "store": {"backend": "sqlite", "state": "ok"},
    }


def test_a_store_with_no_schema_is_not_ready(make_qd, tmp_path):
    qd = make_qd(url=f"sqlite:///{tmp_path / 'empty.db'}")
    response = create_app(qd=qd).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["store"]["state"] == "no_schema"
    assert "run `quarterdeck db upgrade`" in response.json["reason"]


def test_a_read_only_sqlite_file_is_not_ready_with_the_reason(sqlite_url):
    # Root ignores file modes, so the server runs without the capability that lets it.
    folder = Path(tempfile.mkdtemp(prefix="qd-ro-"))
    try:
        database = folder / "q.db"
        shutil.copy(_sqlite_path(sqlite_url), database)
        database.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        port = free_port()
        config = folder / "quarterdeck.toml"
        config.write_text(
            f'[store]\nurl = "sqlite:///{database}"\n[server]\nbind = "127.0.0.1:{port}"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTERDECK_")}
        env.update(QUARTERDECK_CONFIG=str(config), QUARTERDECK_SECRET_KEY="read-only-test")
        argv = [sys.executable, "-m", "app.cli", "serve"]
        if os.geteuid() == 0:
            setpriv = require_binary("setpriv", "util-linux")
            drop = "-dac_override,-dac_read_search,-fowner"
            argv = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", *argv]
        repo = Path(__file__).resolve().parents[2]
        with ServerProcess(
            "quarterdeck", argv, log_path=folder / "serve.log", cwd=repo, env=env
        ) as server:
            base = f"http://127.0.0.1:{port}"
            server.wait_ready(lambda: http_get(f"{base}/healthz")[0] == 200)
            status, body = http_get(f"{base}/readyz")
            assert status == 503, body
            answer = json.loads(body)
            assert answer["store"] == {"backend": "sqlite", "state": "read_only"}
            assert answer["reason"] == (
                "the store is read-only: attempt to write a readonly database"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _admin(postgres_server):
    conninfo = postgres_server.url.set(drivername="postgresql").render_as_string(
        hide_password=False
    )
    return psycopg.connect(conninfo, autocommit=True)


def _end_sessions_of(admin, database: str) -> None:
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )


def test_postgresql_killed_connections_recover_and_a_read_only_database_is_not_ready(
    make_qd, postgres_server
):
    url = postgres_server.create_database()
    migrate.upgrade(url)
    database = make_url(url).database
    qd = make_qd(url=url)
    client = create_app(qd=qd).test_client()
    assert client.get("/readyz").json["status"] == "ok"
    with _admin(postgres_server) as admin:
        _end_sessions_of(admin, database)  # the pool's connections die under it
        assert client.get("/readyz").json["status"] == "ok"

        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        _end_sessions_of(admin, database)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json["store"] == {"backend": "postgresql", "state": "read_only"}
        assert response.json["reason"] == (
            "the store is read-only: cannot execute UPDATE in a read-only transaction"
        )

        admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        _end_sessions_of(admin, database)
        assert client.get("/readyz").json["status"] == "ok"


def test_a_stopped_postgresql_server_is_not_ready(make_qd):
    workdir = short_temp_dir("qd-pg-", reachable_by=unprivileged_user())
    try:
        with running_postgres(workdir) as server_url:
            url = server_url.render_as_string(hide_password=False)
            migrate.upgrade(url)
            qd = make_qd(url=url)
            client = create_app(qd=qd).test_client()
            assert client.get("/readyz").json["status"] == "ok"
        response = client.get("/readyz")  # the server is gone now
        assert response.status_code == 503
        assert response.json["store"] == {"backend": "postgresql", "state": "unreachable"}
        assert response.json["reason"].startswith("the store cannot be reached: ")
        assert client.get("/healthz").status_code == 200
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("path", ["/readyz"])
def test_the_readiness_answers_match_the_documented_schema(make_qd, path, tmp_path):
    from tests.web.test_openapi import OPENAPI_FILE, schema_errors

    document = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    responses = document["paths"][path]["get"]["responses"]
    good = create_app(qd=make_qd()).test_client().get(path)
    broken = create_app(qd=make_qd(url=f"sqlite:///{tmp_path}/no/dir/q.db")).test_client()
    bad = broken.get(path)
    assert (good.status_code, bad.status_code) == (200, 503)
    assert bad.json["store"]["state"] == "unreachable"
    for response in (good, bad):
        schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
        assert schema_errors(response.json, schema, document) == []
