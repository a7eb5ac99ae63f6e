"""action approval: who approved a service-wide action, and whether an admin broke glass

Three nullable/defaulted columns on audit_entries, nothing else changes. Downgrade drops them,
and with them only what this revision introduced (who approved, and the break-glass flag);
every row and every other column is left exactly as it was (export `GET /api/v1/audit` first
if the approvals must outlive the downgrade).

Revision ID: 0018
Revises: 0023
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.add_column(sa.Column("approved_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("break_glass", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_column("break_glass")
        batch.drop_column("approved_at")
        batch.drop_column("approved_by")
