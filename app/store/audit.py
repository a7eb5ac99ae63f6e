"""The audit trail of actions, the target locks that serialise them, and their request keys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import ActionLock, AuditEntry, RuleProposal


def add_entry(db: Session, **fields: Any) -> AuditEntry:
    """Write the audit row of an action about to run (status "running")."""
    entry = AuditEntry(**fields)
    db.add(entry)
    db.flush()
    return entry


def finish_entry(db: Session, entry_id: str, steps: list, status: str, at: datetime) -> None:
    """Record every step's result and the action's final status."""
    db.execute(
        update(AuditEntry)
        .where(AuditEntry.id == entry_id)
        .values(steps=steps, status=status, finished_at=at)
    )


def record_progress(db: Session, entry_id: str, steps: list) -> None:
    """Show a running action's progress in its steps (replaced by the results at the end)."""
    db.execute(
        update(AuditEntry)
        .where(AuditEntry.id == entry_id, AuditEntry.status == "running")
        .values(steps=steps)
    )


def running_without_lock(db: Session, now: datetime) -> list[AuditEntry]:
    """Return the rows still "running" whose target lock is gone or expired: their run died.

    A running action holds its target's lock from before its row is written until after its
    result is, so a running row without a live lock is one whose process stopped mid-action.
    """
    held = select(ActionLock.audit_id).where(ActionLock.expires_at >= now)
    return list(
        db.scalars(
            select(AuditEntry).where(AuditEntry.status == "running", AuditEntry.id.not_in(held))
        )
    )


def mark_interrupted(db: Session, entry_id: str, steps: list, at: datetime) -> bool:
    """Turn a dead run's "running" row into "interrupted" with what is known; False if it ended."""
    done = db.execute(
        update(AuditEntry)
        .where(AuditEntry.id == entry_id, AuditEntry.status == "running")
        .values(steps=steps, status="interrupted", finished_at=at)
    )
    return bool(done.rowcount)


def lock_holder_entry(db: Session, target: str) -> str | None:
    """Return the audit id of the action holding the target's lock, or None."""
    return db.scalar(select(ActionLock.audit_id).where(ActionLock.target == target))


def entry_by_request_key(db: Session, actor: str, key: str) -> AuditEntry | None:
    """Return the action an actor started with this Idempotency-Key, once its row is written."""
    return db.scalar(
        select(AuditEntry).where(AuditEntry.actor == actor, AuditEntry.idempotency_key == key)
    )


def undo_entry_of(db: Session, entry_id: str, actor: str, since: datetime) -> AuditEntry | None:
    """Return the undo of this entry an actor started since then, once its row is written."""
    return db.scalar(
        select(AuditEntry)
        .where(AuditEntry.undo_of == entry_id, AuditEntry.actor == actor, AuditEntry.at >= since)
        .order_by(AuditEntry.at.desc())
        .limit(1)
    )


def undos_of(db: Session, entry_id: str) -> list[AuditEntry]:
    """Return the undos tried of this entry, oldest first."""
    return list(
        db.scalars(select(AuditEntry).where(AuditEntry.undo_of == entry_id).order_by(AuditEntry.at))
    )


def start_entry(db: Session, entry_id: str, plan: list, blast_radius: dict, **fields: Any) -> bool:
    """Move an awaiting_approval row to running with its fresh plan; False if it no longer waits.

    The status in the WHERE makes the update the arbiter: of two approvers only one starts it.
    """
    done = db.execute(
        update(AuditEntry)
        .where(AuditEntry.id == entry_id, AuditEntry.status == "awaiting_approval")
        .values(plan=plan, blast_radius=blast_radius, status="running", **fields)
    )
    return done.rowcount == 1


def reject_entry(db: Session, entry_id: str, by: str, at: datetime) -> bool:
    """Mark an awaiting_approval row rejected; False if it no longer waits."""
    done = db.execute(
        update(AuditEntry)
        .where(AuditEntry.id == entry_id, AuditEntry.status == "awaiting_approval")
        .values(status="rejected", approved_by=by, approved_at=at, finished_at=at)
    )
    return done.rowcount == 1


def get_entry(db: Session, entry_id: str) -> AuditEntry | None:
    """Return one audit row, or None."""
    return db.get(AuditEntry, entry_id)


def undone_ids(db: Session, entry_ids: list[str]) -> set[str]:
    """Return which of these entries an undo that did not fail already reversed."""
    if not entry_ids:
        return set()
    rows = db.scalars(
        select(AuditEntry.undo_of).where(
            AuditEntry.undo_of.in_(entry_ids), AuditEntry.status.in_(("done", "running"))
        )
    )
    return set(rows)


def list_entries(
    db: Session,
    *,
    limit: int = 100,
    offset: int = 0,
    target: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    status: str | None = None,
    until: datetime | None = None,
) -> tuple[list[AuditEntry], int]:
    """Return audit rows newest first, and how many match in all."""
    query = select(AuditEntry)
    if status:
        query = query.where(AuditEntry.status == status)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if target:
        query = query.where(
            (AuditEntry.target == target) | AuditEntry.target.startswith(target + "/")
        )
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    total = db.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.scalars(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total or 0


def acquire_target_lock(
    store, target: str, audit_id: str, holder: str, now: datetime, ttl_s: float
) -> bool:
    """Take the target's lock row; False when another action holds it and has not expired.

    The primary key makes the insert the arbiter on SQLite and PostgreSQL alike, so replicas
    sharing the store exclude each other; an expired row (its holder died) is removed first.
    """
    with store.session(write=True) as db:
        db.execute(
            delete(ActionLock).where(ActionLock.target == target, ActionLock.expires_at < now)
        )
    try:
        with store.session(write=True) as db:
            db.add(
                ActionLock(
                    target=target,
                    audit_id=audit_id,
                    holder=holder,
                    expires_at=now + timedelta(seconds=ttl_s),
                )
            )
    except IntegrityError:
        return False
    return True


def release_target_lock(store, target: str, audit_id: str) -> None:
    """Free the target, if this action still holds it."""
    with store.session(write=True) as db:
        db.execute(
            delete(ActionLock).where(ActionLock.target == target, ActionLock.audit_id == audit_id)
        )


# Rows of one DELETE ... WHERE id IN (...), well under every driver's parameter limit.
_DELETE_CHUNK = 500


def prune_audit(db: Session, before: datetime) -> int:
    """Delete the entries started before `before` that nothing needs; return how many went.

    Kept whatever their age (docs/configuration.md, `[retention] audit_d`): an entry still
    running or awaiting approval; one a lock or a rule proposal names; one whose change may
    still be in force (it changed something that no undo reversed and no later entry changed
    since, so its undo is still offered); and, with a kept entry, the entry it is the undo
    of and the undos of it (so "undone" stays true).
    """
    old = db.execute(
        select(AuditEntry.id, AuditEntry.at, AuditEntry.status, AuditEntry.steps).where(
            AuditEntry.at < before
        )
    ).all()
    if not old:
        return 0
    needed = {row.id for row in old if row.status in ("running", "awaiting_approval")}
    needed |= set(db.scalars(select(ActionLock.audit_id)))
    needed |= set(
        db.scalars(select(RuleProposal.audit_id).where(RuleProposal.audit_id.isnot(None)))
    )
    undone = set(
        db.scalars(
            select(AuditEntry.undo_of).where(
                AuditEntry.undo_of.isnot(None), AuditEntry.status.in_(("done", "running"))
            )
        )
    )
    # When each thing an action changed (source, target, field) was last changed, by anyone.
    last_changed: dict[tuple[str, str, str], datetime] = {}
    recent = db.execute(select(AuditEntry.at, AuditEntry.steps).where(AuditEntry.at >= before))
    for at, steps in [*((row.at, row.steps) for row in old), *recent]:
        for key in _changed(steps):
            if key not in last_changed or at > last_changed[key]:
                last_changed[key] = at
    for row in old:
        changed = _changed(row.steps)
        if row.id not in undone and any(last_changed[key] <= row.at for key in changed):
            needed.add(row.id)
    # An undo names what it reversed, and says that it is undone: the two stay together.
    undo_of = {
        row.id: row.undo_of
        for row in db.execute(
            select(AuditEntry.id, AuditEntry.undo_of).where(AuditEntry.undo_of.isnot(None))
        )
    }
    old_ids = {row.id for row in old}
    kept = (set(undo_of) - old_ids) | needed
    while True:
        more = {undo_of[i] for i in kept if i in undo_of}
        more |= {i for i, reversed_id in undo_of.items() if reversed_id in kept}
        more -= kept
        if not more:
            break
        kept |= more
    gone = sorted(old_ids - kept)
    for start in range(0, len(gone), _DELETE_CHUNK):
        db.execute(delete(AuditEntry).where(AuditEntry.id.in_(gone[start : start + _DELETE_CHUNK])))
    return len(gone)


def _changed(steps: list | None) -> set[tuple[str, str, str]]:
    """What the steps changed in a source, as (source, target, field); waits change nothing."""
    found = set()
    for step in steps or []:
        if not step.get("changed") or step.get("kind") == "wait":
            continue
        target = json.dumps(step.get("target"), sort_keys=True)
        for name in step.get("set") or {}:
            found.add((step.get("source", ""), target, name))
    return found


def latest_of(
    db: Session, target: str, actions: tuple[str, ...], limit: int = 10
) -> list[AuditEntry]:
    """Return the newest finished rows of these actions on exactly this target."""
    return list(
        db.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.target == target,
                AuditEntry.action.in_(actions),
                AuditEntry.finished_at.is_not(None),
            )
            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .limit(limit)
        )
    )
