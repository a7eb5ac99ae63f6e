"""Rule states and proposals: read and written a whole rule at a time, never per target."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from app.models import AuditEntry, RuleProposal, RuleState

states_t = RuleState.__table__


def sync_rule_states(
    db: Session, rule: str, holding: Iterable[str], now: datetime
) -> dict[str, RuleState]:
    """Make the rule's rows exactly the targets it holds for; return them by target.

    New targets start now; targets it no longer holds for lose their row (a recurrence is
    a new decision). Three statements whatever the number of targets.
    """
    holding = set(holding)
    rows = {r.target: r for r in db.scalars(select(RuleState).where(RuleState.rule == rule))}
    gone = [t for t in rows if t not in holding]
    if gone:
        db.execute(delete(states_t).where(states_t.c.rule == rule, states_t.c.target.in_(gone)))
        for target in gone:
            db.expunge(rows.pop(target))
    new = [t for t in holding if t not in rows]
    if new:
        db.execute(
            insert(states_t),
            [{"rule": rule, "target": t, "since_at": now, "decision": "", "refusal": ""}
             for t in new],
        )  # fmt: skip
        for target in new:
            rows[target] = RuleState(rule=rule, target=target, since_at=now, decision="",
                                     refusal="")  # fmt: skip
    return rows


def forget_unconfigured_rules(db: Session, names: list[str]) -> None:
    """Drop the states of rules no longer configured."""
    db.execute(delete(states_t).where(states_t.c.rule.not_in(names)))


def record_decision(
    db: Session, rule: str, target: str, decision: str, refusal: str, now: datetime
) -> None:
    """Remember what was decided for a target while its condition holds."""
    db.execute(
        update(states_t)
        .where(states_t.c.rule == rule, states_t.c.target == target)
        .values(decision=decision, refusal=refusal, decided_at=now)
    )


def automated_runs_by_service(db: Session, since: datetime) -> dict[str, int]:
    """Runbooks rules ran on their own since then, counted by the service they touched."""
    rows = db.scalars(
        select(AuditEntry.target).where(
            AuditEntry.at >= since,
            AuditEntry.action == "runbook",
            AuditEntry.actor.startswith("rule:"),
            AuditEntry.status.in_(("running", "done", "partial")),
        )
    )
    counts: dict[str, int] = {}
    for target in rows:
        service = target.partition("/")[0]
        counts[service] = counts.get(service, 0) + 1
    return counts


def open_proposal_targets(db: Session, rule: str) -> dict[str, str]:
    """The rule's proposals still waiting, by target -> id."""
    rows = db.execute(
        select(RuleProposal.target, RuleProposal.id).where(
            RuleProposal.rule == rule, RuleProposal.state == "proposed"
        )
    ).all()
    return {r.target: r.id for r in rows}


def expire_proposals(db: Session, ids: list[str], now: datetime) -> None:
    """Dismiss proposals whose condition no longer holds."""
    if ids:
        db.execute(
            update(RuleProposal)
            .where(RuleProposal.id.in_(ids), RuleProposal.state == "proposed")
            .values(state="dismissed", decided_by="condition cleared", decided_at=now)
        )


def claim_proposal(db: Session, proposal_id: str, actor: str, now: datetime) -> bool:
    """Move a proposal from proposed to approved; False when it was not waiting."""
    result = db.execute(
        update(RuleProposal)
        .where(RuleProposal.id == proposal_id, RuleProposal.state == "proposed")
        .values(state="approved", decided_by=actor, decided_at=now)
    )
    return result.rowcount == 1


def finish_proposal(db: Session, proposal_id: str, state: str, audit_id: str | None) -> None:
    """Record the proposal's end: ran (with its audit entry) or back to proposed."""
    values: dict = {"state": state, "audit_id": audit_id}
    if state == "proposed":
        values.update(decided_by="", decided_at=None)
    db.execute(update(RuleProposal).where(RuleProposal.id == proposal_id).values(**values))


def list_proposals(db: Session, *, limit: int = 100, states: tuple[str, ...] = ()) -> list:
    """Proposals newest first."""
    query = select(RuleProposal).order_by(RuleProposal.at.desc(), RuleProposal.id.desc())
    if states:
        query = query.where(RuleProposal.state.in_(states))
    return list(db.scalars(query.limit(limit)))


def rule_states(db: Session) -> list[RuleState]:
    """Every rule state row."""
    return list(db.scalars(select(RuleState).order_by(RuleState.rule, RuleState.since_at)))


def hour_ago(now: datetime) -> datetime:
    """The start of the rate limit's window."""
    return now - timedelta(hours=1)
