"""metrics: current RED per service, the push gauge, scrape targets, firing alerts

Four tables of current values only (Prometheus keeps the history). Downgrade drops them:
their rows are what Prometheus and Alertmanager hold now, rewritten by the next pass after an
upgrade; no other table changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "service_red",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("rate_rps", sa.Double(), nullable=True),
        sa.Column("error_ratio", sa.Double(), nullable=True),
        sa.Column("p50_ms", sa.Double(), nullable=True),
        sa.Column("p95_ms", sa.Double(), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_red")),
        sa.UniqueConstraint("source", "service", name="uq_service_red_source_service"),
    )
    op.create_table(
        "push_gauges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("connections", sa.Double(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_gauges")),
        sa.UniqueConstraint("source", "service", "instance", name="uq_push_gauges_member"),
    )
    op.create_table(
        "scrape_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("job", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("health", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("scrape_url", sa.Text(), nullable=False),
        sa.Column("last_scrape_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scrape_targets")),
        sa.UniqueConstraint("source", "job", "instance", name="uq_scrape_targets_target"),
    )
    op.create_table(
        "firing_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("alert_key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("labels", json_type, nullable=False),
        sa.Column("annotations", json_type, nullable=False),
        sa.Column("active_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("silenced", sa.Boolean(), nullable=False),
        sa.Column("silences", json_type, nullable=False),
        sa.Column("inhibited", sa.Boolean(), nullable=False),
        sa.Column("inhibited_by", json_type, nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firing_alerts")),
        sa.UniqueConstraint("source", "alert_key", name="uq_firing_alerts_source_key"),
    )
    with op.batch_alter_table("firing_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_firing_alerts_service", ["service"], unique=False)


def downgrade() -> None:
    # Current values only: the next pass of Prometheus and Alertmanager writes them again.
    with op.batch_alter_table("firing_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_firing_alerts_service")
    op.drop_table("firing_alerts")
    op.drop_table("scrape_targets")
    op.drop_table("push_gauges")
    op.drop_table("service_red")
