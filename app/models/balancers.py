"""The access layer as the balancers see it: current members and proxies, short rollups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class Balancer(Base):
    """One configured balancer ([[haproxy]] or [[nginx]]) and its whole-balancer figures."""

    __tablename__ = "balancers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # haproxy | nginx
    # False when the balancer cannot count connections per server (nginx OSS).
    per_server_sessions: Mapped[bool] = mapped_column(default=True)
    # Connections open on the balancer now: nginx "Active connections", HAProxy's frontends' scur.
    active: Mapped[int | None] = mapped_column(default=None)
    accepts: Mapped[int | None] = mapped_column(default=None)
    handled: Mapped[int | None] = mapped_column(default=None)
    requests: Mapped[int | None] = mapped_column(default=None)
    reading: Mapped[int | None] = mapped_column(default=None)
    writing: Mapped[int | None] = mapped_column(default=None)
    waiting: Mapped[int | None] = mapped_column(default=None)
    # A digest of the last snapshot's members and their matches: equal means nothing to diff.
    members_digest: Mapped[int | None] = mapped_column(BigInteger, default=None)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BalancerMember(Base):
    """One server of a backend (HAProxy) or upstream (nginx), as last reported."""

    __tablename__ = "balancer_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    balancer_id: Mapped[int] = mapped_column(ForeignKey("balancers.id", ondelete="CASCADE"))
    backend: Mapped[str] = mapped_column(String(255))
    server: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(255), default="")
    port: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(100), default="")
    transitional: Mapped[bool] = mapped_column(default=False)
    check_status: Mapped[str] = mapped_column(String(40), default="")
    weight: Mapped[int | None] = mapped_column(default=None)
    backup: Mapped[bool] = mapped_column(default=False)
    sessions: Mapped[int | None] = mapped_column(default=None)
    max_sessions: Mapped[int | None] = mapped_column(default=None)
    session_limit: Mapped[int | None] = mapped_column(default=None)
    total_sessions: Mapped[int | None] = mapped_column(default=None)
    session_rate: Mapped[int | None] = mapped_column(default=None)
    request_rate: Mapped[int | None] = mapped_column(default=None)
    http_5xx: Mapped[int | None] = mapped_column(default=None)
    check_failures: Mapped[int | None] = mapped_column(default=None)
    # HAProxy's lastchg as a time: a count of seconds would change on every poll.
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    max_fails: Mapped[int | None] = mapped_column(default=None)
    fail_timeout_s: Mapped[float | None] = mapped_column(default=None)
    # When these values were last written; the balancer row says when they were last seen.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("balancer_id", "backend", "server", name="uq_balancer_members_member"),
        Index("ix_balancer_members_address_port", "address", "port"),
    )


class BalancerProxyState(Base):
    """A HAProxy frontend or backend as a whole, as last reported."""

    __tablename__ = "balancer_proxies"

    id: Mapped[int] = mapped_column(primary_key=True)
    balancer_id: Mapped[int] = mapped_column(ForeignKey("balancers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))  # frontend | backend
    status: Mapped[str] = mapped_column(String(100), default="")
    sessions: Mapped[int | None] = mapped_column(default=None)
    max_sessions: Mapped[int | None] = mapped_column(default=None)
    session_limit: Mapped[int | None] = mapped_column(default=None)
    total_sessions: Mapped[int | None] = mapped_column(default=None)
    session_rate: Mapped[int | None] = mapped_column(default=None)
    request_rate: Mapped[int | None] = mapped_column(default=None)
    http_5xx: Mapped[int | None] = mapped_column(default=None)
    # When these values were last written; the balancer row says when they were last seen.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("balancer_id", "kind", "name", name="uq_balancer_proxies_proxy"),
    )


class BalancerRollup(Base):
    """Sessions over one minute: per server, or the balancer's active total (empty backend).

    Balancers keep no history of their own; this is the short one Quarterdeck keeps
    ([retention] samples_d), one row per member per minute, never one per poll.
    """

    __tablename__ = "balancer_rollups"

    id: Mapped[int] = mapped_column(primary_key=True)
    balancer: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(255), default="")  # "" = the balancer's total
    server: Mapped[str] = mapped_column(String(255), default="")
    minute_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sessions_min: Mapped[int]
    sessions_max: Mapped[int]
    sessions_last: Mapped[int]

    __table_args__ = (
        UniqueConstraint(
            "balancer", "minute_at", "backend", "server", name="uq_balancer_rollups_minute"
        ),
        Index("ix_balancer_rollups_minute_at", "minute_at"),
    )


class BalancerBackendRollup(Base):
    """A backend's sessions over one minute: the sum of its members' rollups of that minute.

    Written with the per-server rows by the same pass, so it always equals summing them
    (`sessions_last` of every `balancer_rollups` row of the backend and minute); the Push
    chart reads one row per backend per minute instead of one per server. Kept as long as
    the rows it sums ([retention] samples_d).
    """

    __tablename__ = "balancer_backend_rollups"

    id: Mapped[int] = mapped_column(primary_key=True)
    balancer: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(255))
    minute_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The sum of the minute's last count of each server of the backend, and how many it sums.
    sessions_last: Mapped[int]
    servers: Mapped[int]

    __table_args__ = (
        UniqueConstraint(
            "balancer", "backend", "minute_at", name="uq_balancer_backend_rollups_minute"
        ),
        Index("ix_balancer_backend_rollups_minute_at", "minute_at"),
    )
