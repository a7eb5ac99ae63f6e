"""Run Alembic migrations against a store URL."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from app.store.db import create_store_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    """Build Alembic's configuration for the project's migrations folder."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option(
        "file_template",
        "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s",
    )
    cfg.attributes["url"] = normalize_url(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate the store up to a revision (head by default), one process at a time.

    Replicas started together on an empty store would otherwise race to create it: the
    first to take the migration lock migrates, the others then find it at head. Returns
    the revision the store was at when this process got the lock (None: no schema).
    """
    with migration_lock(url):
        before = revision_of(url)
        command.upgrade(alembic_config(url), revision)
    return before


# Not the leader lock's key (app/replicas/locks.py): a leader may be running meanwhile.
MIGRATION_LOCK_KEY = 0x5144_4D49_4752_4154  # "QDMIGRAT"


@contextlib.contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold a lock that only migrations take: an advisory lock on PostgreSQL, a file lock
    beside an SQLite file; nothing for in-memory SQLite."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "postgresql":
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        return
    database = parsed.database or ""
    path = Path(database)
    # No folder for the file: let SQLite itself say why it cannot open the store.
    if (
        parsed.get_backend_name() != "sqlite"
        or database in ("", ":memory:")
        or (not path.parent.is_dir())
    ):
        yield
        return
    fd = os.open(path.with_name(path.name + ".migrate"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def revision_of(url: str) -> str | None:
    """Return the store's revision, or None when it has no schema (or no SQLite file) yet."""
    if missing_sqlite_file(url):
        return None
    engine = create_store_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Migrate the store down to a revision ('base' removes every table)."""
    command.downgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    """Return the store's migration revision, or None for an empty store."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """Return the newest migration revision shipped with the code."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def is_up_to_date(url: str) -> bool:
    """Tell whether the store is at the head revision."""
    return schema_problem(url) is None


def shown_url(url: str) -> str:
    """Render a store URL for messages, without its password."""
    return make_url(url).render_as_string(hide_password=True)


def missing_sqlite_file(url: str) -> bool:
    """Tell whether the URL names an SQLite file that does not exist (opening would create it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return False
    database = parsed.database or ""
    return database not in ("", ":memory:") and not Path(database).exists()


def schema_problem(url: str) -> str | None:
    """Say why this version cannot use the store as it is, or None when it is at head.

    Never creates anything: an SQLite file that does not exist is reported, not opened.
    """
    where = shown_url(url)
    if missing_sqlite_file(url):
        return f"no store at {where}: run `quarterdeck db upgrade`"
    head = head_revision()
    try:
        revision = revision_of(url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return f"cannot open the store at {where}: {reason}"
    if revision == head:
        return None
    if revision is None:
        return f"the store at {where} has no schema yet: run `quarterdeck db upgrade`"
    script = ScriptDirectory.from_config(alembic_config(url))
    known = {r.revision for r in script.walk_revisions()}
    if revision not in known:
        return (
            f"the store at {where} is at schema {revision}, newer than this version of "
            f"Quarterdeck knows (its newest is {head}): run a newer Quarterdeck"
        )
    return (
        f"the store at {where} is at schema {revision}, this version needs {head}: "
        "run `quarterdeck db upgrade`"
    )
