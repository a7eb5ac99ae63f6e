"""releases: each version seen for a service, with its start time

One new table, nothing else changes. Downgrade drops it: it holds only what this revision
began recording (versions stay on the instances, the releases keys stay in Consul).

Revision ID: 0020
Revises: 0018
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_in", sa.String(length=40), nullable=False),
        sa.Column("by", sa.String(length=255), nullable=False),
        sa.Column("kv_role", sa.String(length=20), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("service", "version", name="uq_releases_service_version"),
    )
    op.create_index("ix_releases_service_started_at", "releases", ["service", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_releases_service_started_at", table_name="releases")
    op.drop_table("releases")
