"""Audit rows left "running" by a process that died mid-action become "interrupted".

What is known of such a run is its plan; each step's source is read now to say whether it
holds the change (then the step counts as done and its undo is offered) or not.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select

from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import Adapter, Step, StepFailed
from app.context import Quarterdeck
from app.models import ActionLock, AuditEntry
from app.store.audit import mark_interrupted, running_without_lock

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted"


def recover_interrupted(qd: Quarterdeck) -> list[str]:
    """Mark every dead run "interrupted" with what its sources hold now; return their ids.

    Cheap when there is none (one query): pages and the audit API call it on every read.
    """
    now = qd.clock()
    with qd.store.session() as db:
        orphaned = _locks_of_dead_local_holders(db)
    if orphaned:
        with qd.store.session(write=True) as db:
            for target, audit_id in orphaned:
                db.execute(
                    delete(ActionLock).where(
                        ActionLock.target == target, ActionLock.audit_id == audit_id
                    )
                )
    with qd.store.session() as db:
        rows = running_without_lock(db, now)
        dead = [(r.id, list(r.plan)) for r in rows]
    if not dead:
        return []
    adapters = configured_adapters(qd.config)
    marked = []
    try:
        for entry_id, plan in dead:
            steps = [known_step(body, adapters) for body in plan]
            with qd.store.session(write=True) as db:
                # A repeat of its Idempotency-Key now gets this row (earlier_run), never a rerun.
                if not mark_interrupted(db, entry_id, steps, qd.clock()):
                    continue
            log.warning("action %s was interrupted (its process stopped mid-action)", entry_id)
            marked.append(entry_id)
    finally:
        close_adapters(adapters)
    if marked:
        qd.feed.publish({"actions", *(f"action:{i}" for i in marked)})
    return marked


def known_step(body: Mapping[str, Any], adapters: Mapping[str, Adapter]) -> dict[str, Any]:
    """Render a planned step of a dead run as a `steps[]` entry from what its source holds now."""
    step = Step.from_json(body)
    result: dict[str, Any] = {**body, "ok": None, "changed": False, "after": None}
    if step.kind == "wait":
        result["detail"] = "interrupted: the wait for zero connections did not finish"
        return result
    adapter = adapters.get(step.source)
    if adapter is None:
        result["detail"] = f"interrupted: source {step.source!r} is no longer configured: unknown"
        return result
    try:
        now = adapter.read(step.target)
    except StepFailed as exc:
        result["detail"] = f"interrupted: the source cannot be read ({exc.reason}): check by hand"
        return result
    result["after"] = now
    if not _holds(now, step.change):
        result["detail"] = "interrupted: not applied (the source does not hold this change)"
    elif _holds(step.before, step.change):
        result.update(ok=True, detail="interrupted, but it was already so when planned")
    else:
        result.update(
            ok=True,
            changed=True,
            detail="interrupted: the source holds this change (read when the run was found dead)",
        )
    return result


def _holds(values: Mapping[str, Any] | None, change: Mapping[str, Any]) -> bool:
    return values is not None and all(values[k] == v for k, v in change.items() if k in values)


def _locks_of_dead_local_holders(db) -> list[tuple[str, str]]:
    """Return the running actions' locks whose holder ran on this host and is gone."""
    host = socket.gethostname()
    rows = db.execute(
        select(ActionLock.target, ActionLock.holder, ActionLock.audit_id)
        .join(AuditEntry, AuditEntry.id == ActionLock.audit_id)
        .where(AuditEntry.status == "running")
    ).all()
    dead = []
    for target, holder, audit_id in rows:
        name, _, pid = holder.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            dead.append((target, audit_id))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
