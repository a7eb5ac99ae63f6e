"""traces: spans received over OTLP and one summary row per trace

Two new tables, nothing else changes. Downgrade drops them: the version below has no trace
ingest and cannot read them; every table that existed before is left exactly as it was.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "spans",
        sa.Column("id", big_id, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("parent_span_id", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("duration_ns", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("attributes", json_type, nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("events", json_type, nullable=False),
        sa.Column("events_count", sa.Integer(), nullable=False),
        sa.Column("links_count", sa.Integer(), nullable=False),
        sa.Column("received_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spans")),
    )
    op.create_index("uq_spans_trace_span", "spans", ["trace_id", "span_id"], unique=True)
    op.create_index("ix_spans_service_start", "spans", ["service", "start_ns"])
    op.create_index("ix_spans_start", "spans", ["start_ns"])
    op.create_index("ix_spans_received", "spans", ["received_ns"])
    op.create_table(
        "traces",
        sa.Column("id", big_id, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("root_service", sa.String(length=255), nullable=False),
        sa.Column("root_operation", sa.String(length=255), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.Column("span_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traces")),
    )
    op.create_index("uq_traces_trace_id", "traces", ["trace_id"], unique=True)
    op.create_index("ix_traces_start", "traces", ["start_ns"])


def downgrade() -> None:
    op.drop_index("ix_traces_start", table_name="traces")
    op.drop_index("uq_traces_trace_id", table_name="traces")
    op.drop_table("traces")
    op.drop_index("ix_spans_received", table_name="spans")
    op.drop_index("ix_spans_start", table_name="spans")
    op.drop_index("ix_spans_service_start", table_name="spans")
    op.drop_index("uq_spans_trace_span", table_name="spans")
    op.drop_table("spans")
