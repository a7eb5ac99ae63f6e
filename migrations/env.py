"""Alembic environment: migrate the store named by the caller's URL."""

from alembic import context

from app.models import Base
from app.models.base import UTCDateTime
from app.store.db import create_store_engine

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    """Run migrations on a live connection (batch mode keeps SQLite ALTERs working)."""
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
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
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations()
