"""trace search indexes: spans by service and duration, and by service and operation

Trace search filters spans by service and a minimum duration (bench/trace_search.py) and the
search form lists a service's operations; both read an index instead of a service's every
span. Indexes only: downgrade drops them and no row changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_spans_service_duration", "spans", ["service", "duration_ns"])
    op.create_index("ix_spans_service_name", "spans", ["service", "name"])


def downgrade() -> None:
    op.drop_index("ix_spans_service_name", table_name="spans")
    op.drop_index("ix_spans_service_duration", table_name="spans")
