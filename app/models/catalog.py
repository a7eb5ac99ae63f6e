"""The service catalog: services, their instances and declared upstreams."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, JSONType, UTCDateTime


class Service(Base):
    """A service as the sources see it, with its rolled-up health."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40), default="")
    tags: Mapped[list] = mapped_column(JSONType, default=list)
    meta: Mapped[dict] = mapped_column(JSONType, default=dict)
    versions: Mapped[list] = mapped_column(JSONType, default=list)
    health: Mapped[str] = mapped_column(String(20), default="unknown")
    health_rank: Mapped[int] = mapped_column(default=0)
    n_total: Mapped[int] = mapped_column(default=0)
    n_passing: Mapped[int] = mapped_column(default=0)
    n_warning: Mapped[int] = mapped_column(default=0)
    n_critical: Mapped[int] = mapped_column(default=0)
    n_maintenance: Mapped[int] = mapped_column(default=0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    instances: Mapped[list[Instance]] = relationship(
        back_populates="service", order_by="Instance.source_id"
    )

    __table_args__ = (Index("ix_services_rank_name", "health_rank", "name"),)


class Instance(Base):
    """One running instance of a service, keyed by the source's own id and node."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(100))
    source_id: Mapped[str] = mapped_column(String(255))
    node: Mapped[str] = mapped_column(String(255), default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    port: Mapped[int] = mapped_column(default=0)
    tags: Mapped[list] = mapped_column(JSONType, default=list)
    meta: Mapped[dict] = mapped_column(JSONType, default=dict)
    node_meta: Mapped[dict] = mapped_column(JSONType, default=dict)
    version: Mapped[str | None] = mapped_column(String(100), default=None)
    health: Mapped[str] = mapped_column(String(20), default="unknown")
    maintenance: Mapped[bool] = mapped_column(default=False)
    maintenance_reason: Mapped[str] = mapped_column(String(1000), default="")
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Null for instances recorded before this column existed.
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    service: Mapped[Service] = relationship(back_populates="instances")

    __table_args__ = (
        UniqueConstraint("source", "node", "source_id", name="uq_instances_source_node_id"),
        Index("ix_instances_service_id", "service_id"),
    )


class ServiceUpstream(Base):
    """A dependency a service declares (e.g. a Consul Connect upstream)."""

    __tablename__ = "service_upstreams"

    id: Mapped[int] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(255))
    upstream: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(100))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("service", "upstream", "source", name="uq_service_upstreams_edge"),
    )
