"""Who runs the collectors and jobs among the replicas, and what each job run did."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class LeaderRow(Base):
    """The replica that holds the leader lock now (one row per lock name)."""

    __tablename__ = "leader"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    replica: Mapped[str] = mapped_column(String(255))
    since_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Raised by each new leader: a run checks it before starting (a fencing token).
    term: Mapped[int]
    # The leader rewrites this now and then, so a dead leader's row shows its age.
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRun(Base):
    """One run of a declared job (app/collection/jobs.py), recorded by the scheduler."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(255))
    replica: Mapped[str] = mapped_column(String(255), default="")
    term: Mapped[int | None] = mapped_column(default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_s: Mapped[float]
    ok: Mapped[bool]
    error: Mapped[str] = mapped_column(Text, default="")
    counts: Mapped[dict] = mapped_column(JSONType, default=dict)

    __table_args__ = (Index("ix_job_runs_job_id_started_at", "job_id", "started_at"),)
