"""Idempotency: the fleet's conflict events (a copy of the Redis Stream), Redis's state, and
the keys of Quarterdeck's own API requests when no Redis is configured.

Events are keyed by their stream entry id, so reading an entry twice stores it once. Times are
the event's own `ts_ms` (Unix milliseconds) as sent, so a filter is one integer comparison.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class IdempotencyKeyRow(Base):
    """One `Idempotency-Key` of one caller on one endpoint: held while running, then the answer."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))  # digest of caller + endpoint
    key: Mapped[str] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(String(64))  # the holder's random token
    state: Mapped[str] = mapped_column(String(16))  # inflight | completed
    fingerprint: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(255))  # host:pid
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # In flight: when the hold lapses (a crashed holder); completed: when the answer is dropped.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[list] = mapped_column(JSONType, default=list)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),)


class IdemEventRow(Base):
    """One stream entry; `malformed` ones keep what they had and say what was wrong."""

    __tablename__ = "idem_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[str] = mapped_column(String(255))
    entry_id: Mapped[str] = mapped_column(String(40))
    # The event's ts_ms; the entry id's time when ts_ms was missing or not a number.
    at_ms: Mapped[int] = mapped_column(BigInteger)
    service: Mapped[str] = mapped_column(String(255), default="")
    instance: Mapped[str] = mapped_column(String(255), default="")
    key: Mapped[str] = mapped_column(String(512), default="")
    kind: Mapped[str] = mapped_column(String(40), default="")
    trace_id: Mapped[str] = mapped_column(String(64), default="")
    fingerprint: Mapped[str] = mapped_column(String(128), default="")
    held_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ttl_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    malformed: Mapped[bool] = mapped_column(Boolean, default=False)
    problems: Mapped[str] = mapped_column(String(500), default="")

    __table_args__ = (
        UniqueConstraint("stream", "entry_id", name="uq_idem_events_entry"),
        Index("ix_idem_events_at_ms", "at_ms"),
        Index("ix_idem_events_service_at_ms", "service", "at_ms"),
    )


class RedisSnapshotRow(Base):
    """The last INFO basics of a Redis source and what its last in-flight SCAN saw."""

    __tablename__ = "redis_snapshots"

    source: Mapped[str] = mapped_column(String(255), primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    role: Mapped[str] = mapped_column(String(20), default="")
    used_memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    maxmemory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    connected_clients: Mapped[int | None] = mapped_column(Integer, nullable=True)
    blocked_clients: Mapped[int | None] = mapped_column(Integer, nullable=True)
    repl_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    repl_lag: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    master_link_status: Mapped[str] = mapped_column(String(20), default="")
    replicas: Mapped[list] = mapped_column(JSONType, default=list)
    stream_length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pending: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    scanned_keys: Mapped[int] = mapped_column(Integer, default=0)
    scan_complete: Mapped[bool] = mapped_column(Boolean, default=True)


class InflightKeyRow(Base):
    """An in-flight key the last SCAN of a source saw (replaced every pass)."""

    __tablename__ = "idem_inflight_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(512))
    ttl_left_ms: Mapped[int] = mapped_column(BigInteger)
    running_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    at_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_idem_inflight_keys_source", "source"),)
