"""balancer backend rollups: each backend's sessions per minute, summed from its servers' rows

One new table, filled on upgrade from the per-server rollups already held, so the Push chart's
hour is whole right away. Downgrade drops it: every row is a sum of `balancer_rollups` rows,
which stay exactly as they were, so nothing is lost.

Revision ID: 0009
Revises: 0010 (0010 landed on main first, on 0008; a store already at 0010 must still get 0009)
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "balancer_backend_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("balancer", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=255), nullable=False),
        sa.Column("minute_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sessions_last", sa.Integer(), nullable=False),
        sa.Column("servers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balancer_backend_rollups")),
        sa.UniqueConstraint(
            "balancer", "backend", "minute_at", name="uq_balancer_backend_rollups_minute"
        ),
    )
    with op.batch_alter_table("balancer_backend_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_balancer_backend_rollups_minute_at", ["minute_at"], unique=False)
    # Backend "" is a balancer's own total (app/models/balancers.py), not a backend.
    op.execute(
        "INSERT INTO balancer_backend_rollups (balancer, backend, minute_at, sessions_last, servers) "
        "SELECT balancer, backend, minute_at, SUM(sessions_last), COUNT(*) FROM balancer_rollups "
        "WHERE backend <> '' GROUP BY balancer, backend, minute_at"
    )


def downgrade() -> None:
    # Sums of the per-server rollups, which are kept: the next upgrade adds them up again.
    with op.batch_alter_table("balancer_backend_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_balancer_backend_rollups_minute_at")
    op.drop_table("balancer_backend_rollups")
