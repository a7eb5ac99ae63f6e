"""Short numeric rollups for sources that keep no history of their own."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class Sample(Base):
    """One observed value of a metric for a service instance at a time."""

    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(200))
    service: Mapped[str] = mapped_column(String(255), default="")
    instance: Mapped[str] = mapped_column(String(255), default="")
    value: Mapped[float]
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_samples_metric_service_at", "metric", "service", "at"),)
