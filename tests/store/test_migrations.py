"""The migrations build exactly the schema the models describe, and undo it without losing rows.

The data tests fill every table the store has at each revision from the reflected schema, so a
new migration (and its tables) is covered without touching this file.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, MetaData, inspect, select
from sqlalchemy.engine import Engine

from app.models import Base
from app.store import migrate
from app.store.db import create_store_engine

# Each test walks every revision: they run on different workers.
pytestmark = pytest.mark.spread

ROWS_PER_FILL = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path) -> str:
    """An empty store (no tables at all), once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def engine(empty_url):
    """An engine on the empty store, with the settings the app uses (foreign keys on)."""
    engine = create_store_engine(empty_url)
    yield engine
    engine.dispose()


def revisions() -> list[str]:
    """Every revision shipped, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


# -- rows for any table, from the reflected schema -------------------------------------------------


def _value(column, n: int, dialect: str):
    if isinstance(column.type, JSON):
        return {"n": n, "column": column.name}
    try:
        kind = column.type.python_type
    except NotImplementedError:  # pragma: no cover - a type this helper does not know yet
        raise AssertionError(f"no test value for {column.table.name}.{column.name}") from None
    if kind is bool:
        return n % 2 == 0
    if kind is int:
        return 1000 + n
    if kind in (float, Decimal):
        return n + 0.5
    if kind is datetime:
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n, microseconds=n)
        return at.replace(tzinfo=None) if dialect == "sqlite" else at
    if kind is dict:
        return {"n": n, "column": column.name}
    if kind is list:
        return [column.name, n]
    if kind is bytes:
        return f"{column.name}-{n}".encode()
    if kind is str:
        text_value = f"{column.name}-{n}"
        length = getattr(column.type, "length", None)
        return text_value[-length:] if length else text_value
    raise AssertionError(f"no test value for {column.table.name}.{column.name} ({kind})")


def fill_every_table(engine: Engine, batch: int) -> None:
    """Add rows to every table, every column set, foreign keys pointing at real parent rows."""
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            parents = {}
            for fk in table.foreign_key_constraints:
                columns = [e.column for e in fk.elements]
                parents[fk] = connection.execute(select(*columns)).all()
                assert parents[fk], f"{table.name}: no rows in {fk.referred_table.name} to refer to"
            rows = []
            for i in range(ROWS_PER_FILL):
                n = batch * ROWS_PER_FILL + i
                row = {c.name: _value(c, n, engine.dialect.name) for c in table.columns}
                for fk, candidates in parents.items():
                    chosen = candidates[n % len(candidates)]
                    for element, value in zip(fk.elements, chosen, strict=True):
                        row[element.parent.name] = value
                rows.append(row)
            connection.execute(table.insert(), rows)


def _comparable(value):
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        try:  # SQLite reflects some timestamps as text
            return datetime.fromisoformat(value).replace(tzinfo=None)
        except ValueError:
            return value
    return value


def snapshot(engine: Engine) -> dict[str, dict[str, list]]:
    """Every table's rows, column by column, in primary-key order."""
    metadata = MetaData()
    metadata.reflect(engine)
    tables = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = connection.execute(select(table).order_by(*order)).mappings().all()
            tables[table.name] = {
                c.name: [_comparable(row[c.name]) for row in rows] for c in table.columns
            }
    return tables


def assert_rows_kept(before: dict, after: dict) -> None:
    """Every table in `after` that was in `before` holds the same rows in the columns both have."""
    for name, columns in after.items():
        if name not in before:
            continue
        for column, values in columns.items():
            if column in before[name]:
                assert values == before[name][column], f"{name}.{column} changed"


def row_counts(tables: dict) -> dict[str, int]:
    return {name: len(next(iter(columns.values()), [])) for name, columns in tables.items()}


ORPHANING_MIGRATION = '''"""a broken migration: deletes instances, leaving their checks behind"""

from alembic import op

revision = "9999"
down_revision = "HEAD"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("DELETE FROM instances WHERE node = 'node-0'")


def downgrade():
    pass
'''


# -- the tests ------------------------------------------------------------------------------------


def test_migrations_and_models_agree_and_downgrade_to_base_works(empty_url):
    url = empty_url
    migrate.upgrade(url)
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == migrate.head_revision()
        migrate.downgrade(url, "base")
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        migrate.upgrade(url)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_every_single_step_down_and_up_keeps_the_rows_of_every_table_it_keeps(empty_url, engine):
    below = "base"
    for batch, revision in enumerate(revisions()):
        migrate.upgrade(empty_url, revision)
        fill_every_table(engine, batch)
        at_revision = snapshot(engine)
        assert all(row_counts(at_revision).values()), "every table holds rows"

        migrate.downgrade(empty_url, below)
        stepped_down = snapshot(engine)
        assert_rows_kept(at_revision, stepped_down)
        kept = set(stepped_down)
        assert {n: c for n, c in row_counts(at_revision).items() if n in kept} == row_counts(
            stepped_down
        ), f"downgrading {revision} lost rows"

        migrate.upgrade(empty_url, revision)
        back_up = snapshot(engine)
        assert set(back_up) == set(at_revision)
        assert_rows_kept(stepped_down, back_up)
        assert {n: row_counts(back_up)[n] for n in kept} == row_counts(stepped_down)
        below = revision


def test_down_to_each_older_revision_and_back_to_head_keeps_rows_written_under_every_schema(
    empty_url, engine
):
    every = revisions()
    for batch, revision in enumerate(every):  # data written under each schema, then migrated on
        migrate.upgrade(empty_url, revision)
        fill_every_table(engine, batch)
    batch = len(every)
    for target in [*reversed(every[:-1]), "base"]:
        at_head = snapshot(engine)
        migrate.downgrade(empty_url, target)
        down = snapshot(engine)
        assert_rows_kept(at_head, down)
        assert row_counts(down) == {n: c for n, c in row_counts(at_head).items() if n in down}
        migrate.upgrade(empty_url, "head")
        up = snapshot(engine)
        assert_rows_kept(down, up)
        assert {n: row_counts(up)[n] for n in down} == row_counts(down)
        fill_every_table(engine, batch)  # tables the downgrade dropped are empty again
        batch += 1
    assert set(snapshot(engine)) >= set(Base.metadata.tables)


def test_a_sqlite_migration_that_would_orphan_rows_is_refused_and_leaves_the_store_as_it_was(
    tmp_path,
):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    engine = create_store_engine(url)
    fill_every_table(engine, 0)
    before = snapshot(engine)
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.head_revision()
    orphaning = ORPHANING_MIGRATION.replace("HEAD", head)
    (scripts / "versions" / "29990101_0000_9999_orphans.py").write_text(orphaning, "utf-8")
    config = migrate.alembic_config(url)
    config.set_main_option("script_location", str(scripts))
    with pytest.raises(Exception, match=r"rows would break foreign keys: (checks|health_)"):
        command.upgrade(config, "head")
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head
        assert snapshot(engine) == before
    finally:
        engine.dispose()


def test_migrations_on_sqlite_never_run_with_foreign_keys_on(tmp_path):
    """The regression: batch-altering `instances` with foreign keys on cascaded to its checks."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    engine = create_store_engine(url)
    try:
        fill_every_table(engine, 0)
        checks = snapshot(engine)["checks"]
        migrate.downgrade(url, revisions()[0])
        migrate.upgrade(url)
        assert snapshot(engine)["checks"] == checks
        with engine.connect() as connection:  # the app's own connections still enforce them
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
