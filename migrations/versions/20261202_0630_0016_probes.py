"""probes: business availability probe states, results and transitions

Three new tables, nothing else changes. Downgrade drops them (and with them only the probe
history this revision introduced); no earlier table or row is touched.

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-02 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "probe_states",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("since_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ok", sa.Boolean(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_latency_ms", sa.Float(), nullable=False),
        sa.Column("last_detail", sa.Text(), nullable=False),
        sa.Column("fresh_until_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_probe_states")),
    )
    op.create_table(
        "probe_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_results")),
    )
    op.create_index("ix_probe_results_name_at", "probe_results", ["name", "at"])
    op.create_index("ix_probe_results_at", "probe_results", ["at"])
    op.create_table(
        "probe_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=False),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_transitions")),
    )
    op.create_index("ix_probe_transitions_name_at", "probe_transitions", ["name", "at"])
    op.create_index("ix_probe_transitions_at", "probe_transitions", ["at"])


def downgrade() -> None:
    op.drop_index("ix_probe_transitions_at", table_name="probe_transitions")
    op.drop_index("ix_probe_transitions_name_at", table_name="probe_transitions")
    op.drop_table("probe_transitions")
    op.drop_index("ix_probe_results_at", table_name="probe_results")
    op.drop_index("ix_probe_results_name_at", table_name="probe_results")
    op.drop_table("probe_results")
    op.drop_table("probe_states")
