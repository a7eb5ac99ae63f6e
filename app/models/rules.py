"""Guarded automation: which rule holds for which target since when, and its proposals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class RuleState(Base):
    """A rule's condition holding for one target: since when, and what was decided about it.

    The row goes when the condition stops holding, so a later recurrence is a new decision.
    """

    __tablename__ = "rule_states"

    rule: Mapped[str] = mapped_column(String(100), primary_key=True)
    target: Mapped[str] = mapped_column(String(600), primary_key=True)
    since_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # "" (not yet due) | proposed | ran | refused | dry-run
    decision: Mapped[str] = mapped_column(String(20), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The limit or reason a refusal named, so a repeat of the same refusal is audited once.
    refusal: Mapped[str] = mapped_column(String(60), default="")


class RuleProposal(Base):
    """A runbook's plan waiting for an operator's approval, with the evidence behind it."""

    __tablename__ = "rule_proposals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(600))
    runbook: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    plan: Mapped[list] = mapped_column(JSONType, default=list)
    evidence: Mapped[dict] = mapped_column(JSONType, default=dict)
    # proposed | approved (running) | dismissed | ran
    state: Mapped[str] = mapped_column(String(20), default="proposed")
    decided_by: Mapped[str] = mapped_column(String(255), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    audit_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # What the webhook answered ("" when none is configured).
    delivery: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_rule_proposals_state_at", "state", "at"),)
