"""What each source's collector did: the current status and the run history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class SourceStatus(Base):
    """The latest known state of one configured source."""

    __tablename__ = "source_status"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # "config" marks an error the operator must fix (e.g. ACL denied), not a flap.
    error_kind: Mapped[str] = mapped_column(String(20), default="")
    ok: Mapped[bool] = mapped_column(default=False)
    # What a source that still answers wants the operator to know (ACL filtering, churn):
    # stored here so every replica's pages show what the collecting one saw.
    warnings: Mapped[list] = mapped_column(JSONType, default=list)


class CollectorRun(Base):
    """One collection pass against one source."""

    __tablename__ = "collector_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_s: Mapped[float]
    ok: Mapped[bool]
    error: Mapped[str] = mapped_column(Text, default="")
    counts: Mapped[dict] = mapped_column(JSONType, default=dict)

    __table_args__ = (Index("ix_collector_runs_source_started", "source", "started_at"),)
