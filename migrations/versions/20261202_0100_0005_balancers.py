"""balancers: members, proxies and 1-minute session rollups

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _counts(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.Integer(), nullable=True) for name in names]


def upgrade() -> None:
    op.create_table(
        "balancers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("per_server_sessions", sa.Boolean(), nullable=False),
        *_counts("active", "accepts", "handled", "requests", "reading", "writing", "waiting"),
        sa.Column("members_digest", sa.BigInteger(), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balancers")),
        sa.UniqueConstraint("name", name=op.f("uq_balancers_name")),
    )
    op.create_table(
        "balancer_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("balancer_id", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=255), nullable=False),
        sa.Column("server", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=100), nullable=False),
        sa.Column("transitional", sa.Boolean(), nullable=False),
        sa.Column("check_status", sa.String(length=40), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=True),
        sa.Column("backup", sa.Boolean(), nullable=False),
        *_counts("sessions", "max_sessions", "session_limit", "total_sessions"),
        *_counts("session_rate", "request_rate", "http_5xx", "check_failures"),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        *_counts("max_fails"),
        sa.Column("fail_timeout_s", sa.Double(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["balancer_id"],
            ["balancers.id"],
            name=op.f("fk_balancer_members_balancer_id_balancers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balancer_members")),
        sa.UniqueConstraint("balancer_id", "backend", "server", name="uq_balancer_members_member"),
    )
    with op.batch_alter_table("balancer_members", schema=None) as batch_op:
        batch_op.create_index("ix_balancer_members_address_port", ["address", "port"], unique=False)
    op.create_table(
        "balancer_proxies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("balancer_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=100), nullable=False),
        *_counts("sessions", "max_sessions", "session_limit", "total_sessions"),
        *_counts("session_rate", "request_rate", "http_5xx"),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["balancer_id"],
            ["balancers.id"],
            name=op.f("fk_balancer_proxies_balancer_id_balancers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balancer_proxies")),
        sa.UniqueConstraint("balancer_id", "kind", "name", name="uq_balancer_proxies_proxy"),
    )
    op.create_table(
        "balancer_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("balancer", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=255), nullable=False),
        sa.Column("server", sa.String(length=255), nullable=False),
        sa.Column("minute_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sessions_min", sa.Integer(), nullable=False),
        sa.Column("sessions_max", sa.Integer(), nullable=False),
        sa.Column("sessions_last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balancer_rollups")),
        sa.UniqueConstraint(
            "balancer", "minute_at", "backend", "server", name="uq_balancer_rollups_minute"
        ),
    )
    with op.batch_alter_table("balancer_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_balancer_rollups_minute_at", ["minute_at"], unique=False)


def downgrade() -> None:
    # These tables are new in 0005: no older table loses a row. The current members are read
    # again by the next pass; the rollups are short-lived history that 0004 had no place for.
    with op.batch_alter_table("balancer_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_balancer_rollups_minute_at")
    op.drop_table("balancer_rollups")
    op.drop_table("balancer_proxies")
    with op.batch_alter_table("balancer_members", schema=None) as batch_op:
        batch_op.drop_index("ix_balancer_members_address_port")
    op.drop_table("balancer_members")
    op.drop_table("balancers")
