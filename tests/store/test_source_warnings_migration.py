"""Migration 0004 adds the warnings of sources and takes them away again losing no other data."""

from __future__ import annotations

from sqlalchemy import text

from app.store import migrate
from app.store.db import create_store_engine

ROW = {"name": "consul", "kind": "consul", "last_error": "x", "error_kind": "", "ok": True}


def _fresh_url(request, store_url: str, tmp_path) -> str:
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'warnings.db'}"
    return request.getfixturevalue("postgres_server").create_database()


def test_source_status_rows_survive_upgrade_and_downgrade_of_0004(request, store_url, tmp_path):
    url = _fresh_url(request, store_url, tmp_path)
    migrate.upgrade(url, "0002")
    engine = create_store_engine(url)
    try:
        with engine.begin() as db:
            db.execute(
                text(
                    "INSERT INTO source_status (name, kind, last_error, error_kind, ok) "
                    "VALUES (:name, :kind, :last_error, :error_kind, :ok)"
                ),
                ROW,
            )
        migrate.upgrade(url, "0004")
        with engine.connect() as db:
            row = db.execute(text("SELECT name, last_error, warnings FROM source_status")).one()
        assert row.name == "consul" and row.last_error == "x"
        assert row.warnings in ([], "[]")

        migrate.downgrade(url, "0002")
        with engine.connect() as db:
            rows = db.execute(text("SELECT name, kind, last_error, ok FROM source_status")).all()
        assert [(r.name, r.kind, r.last_error, bool(r.ok)) for r in rows] == [
            ("consul", "consul", "x", True)
        ]
    finally:
        engine.dispose()
