"""Health checks of instances and the history of their state changes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime

if TYPE_CHECKING:
    from app.models.catalog import Instance, Service


class Check(Base):
    """The current state of one health check on one instance."""

    __tablename__ = "checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    check_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    # service | node | maintenance
    kind: Mapped[str] = mapped_column(String(20), default="service")
    status: Mapped[str] = mapped_column(String(20))
    output: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    instance: Mapped[Instance] = relationship()

    __table_args__ = (UniqueConstraint("instance_id", "check_id", name="uq_checks_instance_check"),)


class HealthTransition(Base):
    """An instance's health changed from one state to another at a time."""

    __tablename__ = "health_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    check_id: Mapped[str] = mapped_column(String(255), default="")
    output: Mapped[str] = mapped_column(Text, default="")

    service: Mapped[Service] = relationship()
    instance: Mapped[Instance] = relationship()

    __table_args__ = (
        Index("ix_health_transitions_service_at", "service_id", "at"),
        Index("ix_health_transitions_at", "at"),
    )
