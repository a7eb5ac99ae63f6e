"""Actions that changed the fleet: the audit trail, target locks and request keys (DESIGN §7)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class AuditEntry(Base):
    """One action as it was planned and run: who, when, what, each step's result, the undo."""

    __tablename__ = "audit_entries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(40))
    # "service/instance" or "service": what the target lock is named after.
    target: Mapped[str] = mapped_column(String(600))
    reason: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict] = mapped_column(JSONType, default=dict)
    plan: Mapped[list] = mapped_column(JSONType, default=list)
    steps: Mapped[list] = mapped_column(JSONType, default=list)
    blast_radius: Mapped[dict] = mapped_column(JSONType, default=dict)
    # awaiting_approval or rejected (service-wide actions under [actions] require_approval),
    # running while it executes, then done | failed | partial.
    status: Mapped[str] = mapped_column(String(20))
    undo_of: Mapped[str | None] = mapped_column(String(32), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    # Who approved (or rejected) an action that waited for a second operator, and when.
    approved_by: Mapped[str | None] = mapped_column(String(255), default=None)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # An admin ran it without the approval it needed.
    break_glass: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (
        Index("ix_audit_entries_at", "at"),
        Index("ix_audit_entries_target", "target"),
        Index("ix_audit_entries_undo_of", "undo_of"),
    )


class ActionLock(Base):
    """A target being acted on: one row per target, so a second action on it is refused.

    A row, not an in-process lock, so it holds across replicas on SQLite and PostgreSQL;
    `expires_at` frees a target whose holder died mid-action.
    """

    __tablename__ = "action_locks"

    target: Mapped[str] = mapped_column(String(600), primary_key=True)
    audit_id: Mapped[str] = mapped_column(String(32))
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActionRequestKey(Base):
    """An `Idempotency-Key` of POST /api/v1/actions as kept before `app.idempotency` held them.

    No longer written or read: keys live in Redis or `idempotency_keys`, and the audit row's
    `idempotency_key` is the durable record. Kept so that no migration drops its rows.
    """

    __tablename__ = "action_request_keys"

    actor: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))  # running | done
    status_code: Mapped[int | None] = mapped_column(default=None)
    result: Mapped[dict | None] = mapped_column(JSONType, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
