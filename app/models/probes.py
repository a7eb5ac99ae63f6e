"""Business availability probes: each probe's current state, its results and its transitions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class ProbeState(Base):
    """A probe's state now (passing or failing) and its last result."""

    __tablename__ = "probe_states"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    service: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20))
    since_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_ok: Mapped[bool] = mapped_column(Boolean)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_latency_ms: Mapped[float] = mapped_column(Float)
    last_detail: Mapped[str] = mapped_column(Text, default="")
    # Past this time without a new result the state is stale (three intervals after the last).
    fresh_until_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProbeResultRow(Base):
    """One probe run: when, whether it passed, the HTTP status, its latency and why."""

    __tablename__ = "probe_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_probe_results_name_at", "name", "at"),
        Index("ix_probe_results_at", "at"),
    )


class ProbeTransition(Base):
    """A probe went from one state to another at a time, for the reason in `detail`."""

    __tablename__ = "probe_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_probe_transitions_name_at", "name", "at"),
        Index("ix_probe_transitions_at", "at"),
    )
