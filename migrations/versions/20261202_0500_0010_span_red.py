"""span_red: per-minute RED figures derived from spans, and how far the job has read

Two new tables, nothing else changes. Downgrade drops them: they are derived from the spans
table (which stays), so no data is lost; the job rebuilds them from the spans it still holds.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = 20  # app/models/span_red.py BUCKET_COLUMNS: b00 ... b19


def upgrade() -> None:
    op.create_table(
        "span_red_minutes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("minute_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("duration_sum_ms", sa.Float(), nullable=False),
        sa.Column("duration_max_ms", sa.Float(), nullable=False),
        *(sa.Column(f"b{i:02d}", sa.Integer(), nullable=False) for i in range(BUCKETS)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_span_red_minutes")),
        sa.UniqueConstraint("source", "target", "minute_at", name="uq_span_red_minutes_key"),
    )
    op.create_index("ix_span_red_minutes_minute_at", "span_red_minutes", ["minute_at"])
    op.create_table(
        "span_red_progress",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("received_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_span_red_progress")),
    )


def downgrade() -> None:
    op.drop_table("span_red_progress")
    op.drop_index("ix_span_red_minutes_minute_at", table_name="span_red_minutes")
    op.drop_table("span_red_minutes")
