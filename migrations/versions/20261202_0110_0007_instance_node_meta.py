"""instance node_meta

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(JSONB(), "postgresql")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_meta", json_type, nullable=True))
    # Unknown until the next pass reads the node: an empty map, as for a node without meta.
    op.execute("UPDATE instances SET node_meta = '{}'")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.alter_column("node_meta", existing_type=json_type, nullable=False)


def downgrade() -> None:
    # Node meta is re-read from Consul on the next pass: dropping it loses nothing kept only here.
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("node_meta")
