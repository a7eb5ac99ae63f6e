"""actions: the audit trail, target locks and Idempotency-Key records of actions

Three new tables, nothing else changes. Downgrade drops them: the version below has no actions
and cannot read them (export the audit first, `GET /api/v1/audit`, if it must outlive the
downgrade); every table that existed before is left exactly as it was.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=600), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("plan", _json(), nullable=False),
        sa.Column("steps", _json(), nullable=False),
        sa.Column("blast_radius", _json(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("undo_of", sa.String(length=32), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    op.create_index("ix_audit_entries_at", "audit_entries", ["at"])
    op.create_index("ix_audit_entries_target", "audit_entries", ["target"])
    op.create_index("ix_audit_entries_undo_of", "audit_entries", ["undo_of"])
    op.create_table(
        "action_locks",
        sa.Column("target", sa.String(length=600), nullable=False),
        sa.Column("audit_id", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_action_locks")),
    )
    op.create_table(
        "action_request_keys",
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("actor", "key", name=op.f("pk_action_request_keys")),
    )


def downgrade() -> None:
    op.drop_table("action_request_keys")
    op.drop_table("action_locks")
    op.drop_index("ix_audit_entries_undo_of", table_name="audit_entries")
    op.drop_index("ix_audit_entries_target", table_name="audit_entries")
    op.drop_index("ix_audit_entries_at", table_name="audit_entries")
    op.drop_table("audit_entries")
