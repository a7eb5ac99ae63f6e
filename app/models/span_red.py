"""RED figures derived from spans: one row per service (or per edge) per minute.

Prometheus keeps the history of services it scrapes; for the ones it does not (or a fleet with
no Prometheus at all), the spans are the only figures. A job adds the spans it has not yet read
into these rows, so a window's rate, error ratio and p95 are sums over at most a few rows per
minute instead of a scan of the spans.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime

# Upper bounds (ms) of the duration histogram's buckets; a last bucket takes everything above.
# Fixed, so rows of any minute add up; p95 is interpolated within one bucket's width.
BUCKET_BOUNDS_MS: tuple[float, ...] = (
    1, 2.5, 5, 10, 15, 25, 40, 60, 100, 150, 250, 400, 600, 1000, 1500, 2500, 5000, 10000, 30000,
)  # fmt: skip
BUCKET_COLUMNS: tuple[str, ...] = tuple(f"b{i:02d}" for i in range(len(BUCKET_BOUNDS_MS) + 1))


class SpanRedMinute(Base):
    """Spans of one service (`target` "") or one edge (`source` → `target`) in one minute."""

    __tablename__ = "span_red_minutes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The minute the spans started in (UTC, seconds zero).
    minute_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The service; for an edge, the calling (parent span's) service.
    source: Mapped[str] = mapped_column(String(255))
    # "" for the service's own figures; for an edge, the called (child span's) service.
    target: Mapped[str] = mapped_column(String(255), default="")
    count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)  # spans with status ERROR
    duration_sum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    duration_max_ms: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        UniqueConstraint("source", "target", "minute_at", name="uq_span_red_minutes_key"),
        Index("ix_span_red_minutes_minute_at", "minute_at"),
    )


class SpanRedRecent(Base):
    """The sums of the minute rows of the last `RECENT_MINUTES` minutes, per service or edge.

    The map's default window reads these (one row per service and edge) instead of summing
    every minute row of the window at each request; the job keeps them (app/store/span_red.py).
    """

    __tablename__ = "span_red_recent"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(255), default="")
    count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    duration_sum_ms: Mapped[float] = mapped_column(Float, default=0.0)
    duration_max_ms: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (UniqueConstraint("source", "target", name="uq_span_red_recent_key"),)


# One count column per bucket (b00 ... b19), so the store adds histograms with plain SQL sums.
for _model in (SpanRedMinute, SpanRedRecent):
    for _name in BUCKET_COLUMNS:
        setattr(_model, _name, mapped_column(_name, Integer, default=0, nullable=False))


class SpanRedProgress(Base):
    """How far the job has read the spans, by their `received_ns`."""

    __tablename__ = "span_red_progress"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Every span received at or before this (ns) has been added.
    received_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    # The first minute `span_red_recent` sums (None until the job first fills it).
    recent_from_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
