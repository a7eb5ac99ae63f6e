"""span_red_recent: the sums of the last 15 minutes of span RED, for the map's default window

One new table and one new nullable column (`span_red_progress.recent_from_at`, the first
minute the sums cover). Downgrade drops both: the sums are derived from `span_red_minutes`
(which stays), and the job rebuilds them when it next finds `recent_from_at` unset.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 05:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = 20  # app/models/span_red.py BUCKET_COLUMNS: b00 ... b19


def upgrade() -> None:
    op.create_table(
        "span_red_recent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("duration_sum_ms", sa.Float(), nullable=False),
        sa.Column("duration_max_ms", sa.Float(), nullable=False),
        *(sa.Column(f"b{i:02d}", sa.Integer(), nullable=False) for i in range(BUCKETS)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_span_red_recent")),
        sa.UniqueConstraint("source", "target", name="uq_span_red_recent_key"),
    )
    with op.batch_alter_table("span_red_progress", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recent_from_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("span_red_progress", schema=None) as batch_op:
        batch_op.drop_column("recent_from_at")
    op.drop_table("span_red_recent")
