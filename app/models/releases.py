"""Releases: each version seen for a service, from the catalog or its releases key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class Release(Base):
    """One version of one service: when it started (first seen) and where it was seen."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(100))
    # The earliest of: an instance first seen running it, the releases key's history `at`.
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # "catalog" (an instance's Meta.version / version= tag), "kv" (the releases key), or both.
    seen_in: Mapped[str] = mapped_column(String(40), default="")
    # Who sent it, when the releases key's history says.
    by: Mapped[str] = mapped_column(String(255), default="")
    # "active" or "previous" when the releases key names it so now, else "".
    kv_role: Mapped[str] = mapped_column(String(20), default="")
    # Instances running it at the last look (0: none any more).
    instances: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        UniqueConstraint("service", "version", name="uq_releases_service_version"),
        Index("ix_releases_service_started_at", "service", "started_at"),
    )
