"""rules: guarded automation's rule states and proposals

Two new tables, nothing else changes. Downgrade drops them (and with them only the rule
states and proposals this revision introduced); every decision is also in audit_entries,
which this revision does not touch.

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rule_states",
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=600), nullable=False),
        sa.Column("since_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refusal", sa.String(length=60), nullable=False),
        sa.PrimaryKeyConstraint("rule", "target", name=op.f("pk_rule_states")),
    )
    op.create_table(
        "rule_proposals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=600), nullable=False),
        sa.Column("runbook", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan", _json(), nullable=False),
        sa.Column("evidence", _json(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("decided_by", sa.String(length=255), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("audit_id", sa.String(length=32), nullable=True),
        sa.Column("delivery", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_proposals")),
    )
    op.create_index("ix_rule_proposals_state_at", "rule_proposals", ["state", "at"])


def downgrade() -> None:
    op.drop_index("ix_rule_proposals_state_at", table_name="rule_proposals")
    op.drop_table("rule_proposals")
    op.drop_table("rule_states")
