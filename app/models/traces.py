"""Spans received over OTLP, and one summary row per trace for search and retention.

Times are integers in nanoseconds since the epoch, as OTLP sends them: no conversion on the
ingest path, exact ordering, and duration is `end - start` without rounding. The API formats
them as RFC 3339 (`_at`) and milliseconds (`_ms`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType

# SQLite aliases only an INTEGER PRIMARY KEY to its rowid; BIGINT there would be a plain column.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# OTLP's span kinds and status codes (opentelemetry-proto trace.proto).
SPAN_KINDS = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}
STATUS_ERROR = 2


class Span(Base):
    """One span as its service sent it (attributes bounded, truncation marked)."""

    __tablename__ = "spans"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32))  # 32 lowercase hex digits
    span_id: Mapped[str] = mapped_column(String(16))  # 16 lowercase hex digits
    parent_span_id: Mapped[str] = mapped_column(String(16), default="")  # "" for a root span
    service: Mapped[str] = mapped_column(String(255))  # resource attribute service.name
    instance: Mapped[str] = mapped_column(String(255), default="")  # service.instance.id
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[int] = mapped_column(SmallInteger, default=0)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    duration_ns: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int] = mapped_column(SmallInteger, default=0)
    status_message: Mapped[str] = mapped_column(Text, default="")
    # Span attributes, then resource attributes under "resource.", bounded in count and size.
    attributes: Mapped[dict] = mapped_column(JSONType, default=dict)
    # True when an attribute, the name or the events were cut to fit the bounds.
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    # The first events ({"name", "time_ns", "attributes"}), bounded like the attributes.
    events: Mapped[list] = mapped_column(JSONType, default=list)
    events_count: Mapped[int] = mapped_column(Integer, default=0)
    links_count: Mapped[int] = mapped_column(Integer, default=0)
    # When the store wrote it (ns): jobs that derive figures from spans read them in order of
    # arrival, a little behind the newest, so a span committed late is not skipped.
    received_ns: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        # A sender that retries after a lost answer resends spans already stored: unique, so
        # the retry stores nothing twice.
        Index("uq_spans_trace_span", "trace_id", "span_id", unique=True),
        Index("ix_spans_service_start", "service", "start_ns"),
        Index("ix_spans_start", "start_ns"),
        Index("ix_spans_received", "received_ns"),
        # Trace search: a service's spans past a duration, and a service's operations (0011).
        Index("ix_spans_service_duration", "service", "duration_ns"),
        Index("ix_spans_service_name", "service", "name"),
    )


class Trace(Base):
    """What search and retention need of a whole trace, kept up to date as its spans arrive."""

    __tablename__ = "traces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32))
    # The span without a parent; "" until it has arrived (its service may export later).
    root_service: Mapped[str] = mapped_column(String(255), default="")
    root_operation: Mapped[str] = mapped_column(String(255), default="")
    start_ns: Mapped[int] = mapped_column(BigInteger)  # earliest span start
    end_ns: Mapped[int] = mapped_column(BigInteger)  # latest span end
    span_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("uq_traces_trace_id", "trace_id", unique=True),
        Index("ix_traces_start", "start_ns"),
    )
