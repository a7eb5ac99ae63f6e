"""Create the engine for SQLite or PostgreSQL and hand out sessions."""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from app.store.probe import WriteProbe

SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str) -> str:
    """Pick psycopg 3 for PostgreSQL URLs that name no driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_store_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """Create an engine with the settings each backend needs.

    `foreign_keys=False` is for migrations only: SQLite rebuilds a table to alter it, and
    dropping the old copy with foreign keys on would cascade to every row that refers to it.
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=20,
            max_overflow=40,
        )
        event.listen(engine, "connect", functools.partial(_configure_sqlite, foreign_keys))
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    return create_engine(
        url,
        # libpq waits for an unanswered server forever by default.
        connect_args={} if "connect_timeout" in make_url(url).query else {"connect_timeout": 10},
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
    )


def _configure_sqlite(foreign_keys: bool, dbapi_connection, _record) -> None:
    # pysqlite's own transaction handling defers BEGIN badly; we issue it ourselves. That also
    # keeps the PRAGMAs below outside any transaction, where foreign_keys would be ignored.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_sqlite(connection) -> None:
    # A write session takes the write lock up front: in WAL mode a deferred transaction that
    # read first and writes later fails at once (SQLITE_BUSY) if another writer committed in
    # between, and the busy timeout cannot help it.
    immediate = connection.get_execution_options().get("sqlite_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """The database behind Quarterdeck: one engine and a session factory."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = create_store_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False
        )
        self.write_probe = WriteProbe(self.engine)
        # A store dropped without dispose() still closes its pooled connections, rather than
        # leaving them to the garbage collector (psycopg warns of each one deleted open).
        weakref.finalize(self, self.engine.dispose)

    @property
    def dialect(self) -> str:
        """Name the backend: 'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """Open a unit of work that commits on success and rolls back on error.

        Pass `write=True` when the unit of work will write: on SQLite it then waits for the
        write lock before its first read instead of failing when it finally writes.
        """
        factory = self.write_sessions if write else self.sessions
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
