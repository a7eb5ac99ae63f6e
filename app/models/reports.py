"""On-call handoff reports as they were made, and each delivery of one (e-mail, webhook)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class ReportRow(Base):
    """One report over one period: its figures, its HTML and CSV, how it came to be made."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    period_start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # schedule | cli | page: who asked for it.
    trigger: Mapped[str] = mapped_column(String(20))
    # The daily run this is (its configured time that day); None for on-demand reports. Unique
    # with the name, so a daily run taken over by another replica is made once.
    scheduled_for_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    figures: Mapped[dict] = mapped_column(JSONType, default=dict)
    html: Mapped[str] = mapped_column(Text)
    csv: Mapped[str] = mapped_column(Text)
    generation_ms: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("name", "scheduled_for_at", name="uq_reports_name_scheduled_for_at"),
        Index("ix_reports_created_at", "created_at"),
    )


class ReportDelivery(Base):
    """One way a report is sent (an e-mail to its recipients, or a webhook) and how it went."""

    __tablename__ = "report_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    via: Mapped[str] = mapped_column(String(20))  # email | webhook
    # The recipients or the URL (never a secret: credentials come from the environment).
    destination: Mapped[str] = mapped_column(Text)
    # pending (an attempt is due at next_attempt_at) | ok | failed (no attempt left).
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    detail: Mapped[str] = mapped_column(Text, default="")
    # Every attempt: {"at", "ok", "detail"}, oldest first.
    history: Mapped[list] = mapped_column(JSONType, default=list)

    __table_args__ = (
        Index("ix_report_deliveries_report_id", "report_id"),
        Index("ix_report_deliveries_state_next", "state", "next_attempt_at"),
    )
