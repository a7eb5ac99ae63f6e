"""What Prometheus and Alertmanager say now: RED per service, the push gauge, targets, alerts.

Only the current value is kept (one row per service, instance, target or alert, replaced by
each pass); the history stays in Prometheus and is queried from there for charts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class ServiceRedFigure(Base):
    """A service's current request rate, error ratio and latency quantiles."""

    __tablename__ = "service_red"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    service: Mapped[str] = mapped_column(String(255))
    # None where Prometheus has no figure (no traffic in the window), never 0.
    rate_rps: Mapped[float | None] = mapped_column(default=None)
    error_ratio: Mapped[float | None] = mapped_column(default=None)
    p50_ms: Mapped[float | None] = mapped_column(default=None)
    p95_ms: Mapped[float | None] = mapped_column(default=None)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("source", "service", name="uq_service_red_source_service"),)


class PushGauge(Base):
    """The push-connection gauge of one instance, as Prometheus last scraped it."""

    __tablename__ = "push_gauges"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    service: Mapped[str] = mapped_column(String(255))
    instance: Mapped[str] = mapped_column(String(255))
    connections: Mapped[float]
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("source", "service", "instance", name="uq_push_gauges_member"),
    )


class ScrapeTarget(Base):
    """One Prometheus scrape target and how its last scrape went."""

    __tablename__ = "scrape_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    job: Mapped[str] = mapped_column(String(255))
    instance: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(255), default="")
    health: Mapped[str] = mapped_column(String(20), default="unknown")  # up | down | unknown
    last_error: Mapped[str] = mapped_column(Text, default="")
    scrape_url: Mapped[str] = mapped_column(Text, default="")
    last_scrape_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("source", "job", "instance", name="uq_scrape_targets_target"),
    )


class FiringAlertRow(Base):
    """An alert firing now, with the silence that mutes it (Alertmanager) if any."""

    __tablename__ = "firing_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    # A digest of the label set: the same alert has the same key in Prometheus and Alertmanager.
    alert_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(20), default="firing")
    labels: Mapped[dict] = mapped_column(JSONType, default=dict)
    annotations: Mapped[dict] = mapped_column(JSONType, default=dict)
    active_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    silenced: Mapped[bool] = mapped_column(default=False)
    # [{"id", "created_by", "comment", "starts_at", "ends_at", "matchers"}]
    silences: Mapped[list] = mapped_column(JSONType, default=list)
    inhibited: Mapped[bool] = mapped_column(default=False)
    inhibited_by: Mapped[list] = mapped_column(JSONType, default=list)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("source", "alert_key", name="uq_firing_alerts_source_key"),
        Index("ix_firing_alerts_service", "service"),
    )
