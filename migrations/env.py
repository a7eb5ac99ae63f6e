"""Alembic environment: migrate the store named by the caller's URL."""

from alembic import context
from sqlalchemy import text

from app.models import Base
from app.models.base import UTCDateTime
from app.store.db import create_store_engine

config = context.config
target_metadata = Base.metadata


class ForeignKeyViolation(RuntimeError):
    """Migrations left rows whose foreign keys point nowhere; nothing of them was committed."""


def run_migrations() -> None:
    """Run migrations on a live connection (batch mode keeps SQLite ALTERs working)."""
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # SQLite alters a table by copying it and dropping the old one: with foreign keys on, the
    # drop would cascade to every referring row (SQLite "ALTER TABLE", the 12-step procedure).
    engine = create_store_engine(url, foreign_keys=False)
    try:
        # On SQLite, BEGIN IMMEDIATE: wait for a running writer rather than fail mid-migration.
        with engine.connect().execution_options(sqlite_immediate=True) as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


def _render_item(type_, obj, autogen_context):
    """Render project column types as plain SQLAlchemy types, so migrations never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite and _sqlite_foreign_keys_on(connection):
        raise RuntimeError("SQLite migrations need a connection opened with foreign keys off")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
        # SQLite's DDL is transactional too: one transaction for the whole run, so a failed
        # check below leaves the store as it was.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            _check_foreign_keys(connection)


def _sqlite_foreign_keys_on(connection) -> bool:
    # Through the driver: a statement through SQLAlchemy would begin a transaction first.
    cursor = connection.connection.cursor()
    try:
        return bool(cursor.execute("PRAGMA foreign_keys").fetchone()[0])
    finally:
        cursor.close()


def _check_foreign_keys(connection) -> None:
    rows = connection.execute(text("PRAGMA foreign_key_check")).all()
    if rows:
        shown = "; ".join(
            f"{table} row {rowid} -> {parent}" for table, rowid, parent, _ in rows[:5]
        )
        more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
        raise ForeignKeyViolation(
            f"migration refused: {len(rows)} rows would break foreign keys: {shown}{more}"
        )


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations()
