"""The migrations build exactly the schema the models describe, and undo it, on both stores."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from app.models import Base
from app.store import migrate
from app.store.db import create_store_engine


def _empty_store_url(request, backend: str, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("postgres_server").create_database()


def test_migrations_and_models_agree_and_downgrade_to_base_works(request, store_url, tmp_path):
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    url = _empty_store_url(request, backend, tmp_path)
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
