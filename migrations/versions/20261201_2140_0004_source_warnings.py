"""source_status warnings

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-01 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("source_status", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("warnings", json_type, nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    # Warnings are rewritten by the next pass of each source; every other column stays.
    with op.batch_alter_table("source_status", schema=None) as batch_op:
        batch_op.drop_column("warnings")
