"""The audit trail of actions, the target locks that serialise them, and their request keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import ActionLock, ActionRequestKey, AuditEntry


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


def claim_request_key(
    store, actor: str, key: str, fingerprint: str, now: datetime
) -> ActionRequestKey | None:
    """Claim an Idempotency-Key for this actor: None when new (ours), else the first claim."""
    for _ in range(3):  # the first claim may be forgotten between our insert and our read
        try:
            with store.session(write=True) as db:
                db.add(
                    ActionRequestKey(
                        actor=actor,
                        key=key,
                        fingerprint=fingerprint,
                        state="running",
                        created_at=now,
                    )
                )
            return None
        except IntegrityError:
            pass
        with store.session() as db:
            first = db.get(ActionRequestKey, (actor, key))
        if first is not None:
            return first
    raise RuntimeError(f"Idempotency-Key {key!r} is claimed and released over and over")


def finish_request_key(store, actor: str, key: str, status_code: int, result: dict) -> None:
    """Keep the first request's answer, for every repeat of its key."""
    with store.session(write=True) as db:
        db.execute(
            update(ActionRequestKey)
            .where(ActionRequestKey.actor == actor, ActionRequestKey.key == key)
            .values(state="done", status_code=status_code, result=result)
        )


def forget_request_key(store, actor: str, key: str) -> None:
    """Drop a key whose request was refused before it ran: a retry may run."""
    with store.session(write=True) as db:
        db.execute(
            delete(ActionRequestKey).where(
                ActionRequestKey.actor == actor, ActionRequestKey.key == key
            )
        )


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
