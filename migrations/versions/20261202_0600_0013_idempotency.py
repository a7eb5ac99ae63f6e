"""idempotency: the fleet's conflict events, Redis INFO snapshots and in-flight keys

Three new tables, nothing else changes. Downgrade drops them: the events are a copy of the
Redis Stream, and after a later upgrade `XGROUP SETID <stream> quarterdeck 0` makes the collector
read again every entry the stream still holds (emitters trim it with MAXLEN ~, so older ones
are gone from Redis: export idem_events first to keep them); the snapshot and in-flight tables
are refilled by the next pass.

Revision ID: 0013
Revises: 0015
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "idem_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=255), nullable=False),
        sa.Column("entry_id", sa.String(length=40), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("held_ms", sa.BigInteger(), nullable=True),
        sa.Column("ttl_ms", sa.BigInteger(), nullable=True),
        sa.Column("malformed", sa.Boolean(), nullable=False),
        sa.Column("problems", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idem_events")),
        sa.UniqueConstraint("stream", "entry_id", name="uq_idem_events_entry"),
    )
    op.create_index("ix_idem_events_at_ms", "idem_events", ["at_ms"])
    op.create_index("ix_idem_events_service_at_ms", "idem_events", ["service", "at_ms"])
    op.create_table(
        "redis_snapshots",
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("used_memory", sa.BigInteger(), nullable=True),
        sa.Column("maxmemory", sa.BigInteger(), nullable=True),
        sa.Column("connected_clients", sa.Integer(), nullable=True),
        sa.Column("blocked_clients", sa.Integer(), nullable=True),
        sa.Column("repl_offset", sa.BigInteger(), nullable=True),
        sa.Column("repl_lag", sa.BigInteger(), nullable=True),
        sa.Column("master_link_status", sa.String(length=20), nullable=False),
        sa.Column("replicas", JSON, nullable=False),
        sa.Column("stream_length", sa.BigInteger(), nullable=True),
        sa.Column("pending", sa.BigInteger(), nullable=True),
        sa.Column("scanned_keys", sa.Integer(), nullable=False),
        sa.Column("scan_complete", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_redis_snapshots")),
    )
    op.create_table(
        "idem_inflight_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("ttl_left_ms", sa.BigInteger(), nullable=False),
        sa.Column("running_ms", sa.BigInteger(), nullable=True),
        sa.Column("at_risk", sa.Boolean(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idem_inflight_keys")),
    )
    op.create_index("ix_idem_inflight_keys_source", "idem_inflight_keys", ["source"])


def downgrade() -> None:
    op.drop_index("ix_idem_inflight_keys_source", table_name="idem_inflight_keys")
    op.drop_table("idem_inflight_keys")
    op.drop_table("redis_snapshots")
    op.drop_index("ix_idem_events_service_at_ms", table_name="idem_events")
    op.drop_index("ix_idem_events_at_ms", table_name="idem_events")
    op.drop_table("idem_events")
