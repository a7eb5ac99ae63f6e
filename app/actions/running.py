"""Run an action: plan, take the target's lock, execute, verify, audit; and undo one.

The API, the CLI and (later) the UI all come through `submit_action` and `undo_action`, so
each writes the same audit row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.actions.alertmanager import equal_matcher, silence_step
from app.actions.blast import callers_of
from app.actions.instances import INSTANCE_ACTIONS, PlannedAction, plan_instance_action
from app.actions.params import PARAMETERS
from app.actions.services import SERVICE_ACTIONS, parse_service_params, plan_service_action
from app.actions.sources import ALERTMANAGER_SOURCE
from app.actions.steps import ActionRefused, Adapter, execute_steps, read_before, undo_steps
from app.actions.waiting import add_wait_step, check_wait_params
from app.context import Quarterdeck
from app.models import AuditEntry, Instance, Service
from app.queries.sources import iso
from app.store.audit import (
    acquire_target_lock,
    add_entry,
    entry_by_request_key,
    finish_entry,
    get_entry,
    reject_entry,
    release_target_lock,
    start_entry,
    undone_ids,
)

log = logging.getLogger(__name__)

ACTIONS = INSTANCE_ACTIONS + SERVICE_ACTIONS
# Actions that disturb a target: a silence of its alerts is planned when Alertmanager is set.
SILENCED_ACTIONS = ("drain", "degrade", "canary", "rollback")
# A holder that died mid-action frees its target after this long (steps time out sooner).
LOCK_TTL_S = 300
HOLDER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ActionRequest:
    """A validated `POST /api/v1/actions` body (DESIGN §5)."""

    action: str
    service: str
    instance: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    dry_run: bool = False
    # An admin runs a service-wide action without the approval it needs (reason required).
    break_glass: bool = False

    def fingerprint(self) -> str:
        """Digest of what is asked, to tell a repeat from a different request under one key."""
        body = [self.action, self.service, self.instance, self.params, self.reason, self.dry_run]
        if self.break_glass:
            body.append("break_glass")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def parse_action_request(body: Any, now=None) -> ActionRequest:
    """Validate a request body; raise ActionRefused(422) naming the field."""
    if not isinstance(body, dict):
        raise ActionRefused(422, "invalid", "the body must be a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        raise ActionRefused(422, "invalid", f"action must be one of {', '.join(ACTIONS)}")
    target = body.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("service"), str):
        raise ActionRefused(422, "invalid", "target.service must be a service name")
    service, instance = target["service"].strip(), target.get("instance")
    if not service or len(service) > 255:
        raise ActionRefused(422, "invalid", "target.service must be 1 to 255 characters")
    if instance is not None and (not isinstance(instance, str) or not 0 < len(instance) <= 255):
        raise ActionRefused(422, "invalid", "target.instance must be an instance id")
    if action in INSTANCE_ACTIONS and instance is None:
        raise ActionRefused(422, "invalid", f"target.instance is needed to {action}")
    if action in SERVICE_ACTIONS and instance is not None:
        raise ActionRefused(
            422, "invalid", f"{action} acts on a whole service: drop target.instance"
        )
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ActionRefused(422, "invalid", "params must be an object")
    if action in SERVICE_ACTIONS:
        params = parse_service_params(action, params, now or datetime.now(UTC))
    else:
        for name in ("force", "silence"):
            if name in params and not isinstance(params[name], bool):
                raise ActionRefused(422, "invalid", f"params.{name} must be true or false")
        check_wait_params(action, params)
        unknown = sorted(set(params) - set(PARAMETERS[action]))
        if unknown:
            raise ActionRefused(
                422, "invalid", f"params.{unknown[0]} is not a parameter of {action}"
            )
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 1000:
        raise ActionRefused(422, "invalid", "reason must be text of at most 1000 characters")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ActionRefused(422, "invalid", "dry_run must be true or false")
    break_glass = body.get("break_glass", False)
    if not isinstance(break_glass, bool):
        raise ActionRefused(422, "invalid", "break_glass must be true or false")
    if break_glass and not reason.strip():
        raise ActionRefused(422, "invalid", "reason: breaking glass needs a reason")
    return ActionRequest(action, service, instance, params, reason.strip(), dry_run, break_glass)


def plan_action(
    qd: Quarterdeck, adapters: Mapping[str, Adapter], req: ActionRequest, actor: str = ""
) -> PlannedAction:
    """Plan the action, each step with the value its source holds now."""
    now = qd.clock()
    with qd.store.session() as db:
        if req.action in SERVICE_ACTIONS:
            planned = plan_service_action(
                db, adapters, req.action, req.service, req.params, req.reason, actor, now
            )
        else:
            planned = plan_instance_action(
                db, adapters, req.action, req.service, req.instance or "", req.params,
                req.reason, now,
            )  # fmt: skip
        planned.blast_radius.update(callers_of(db, qd.config, req.service, now))
        silence = _silence_step(qd, db, adapters, req, actor)
    if silence is not None:
        planned.steps.insert(0, silence)
    if req.action not in SERVICE_ACTIONS:
        add_wait_step(qd, adapters, planned, req.service, req.instance or "", req.params)
    read_before(planned.steps, adapters)
    planned.blast_radius["needs_approval"] = needs_approval(qd, req)
    return planned


def _silence_step(qd: Quarterdeck, db, adapters, req: ActionRequest, actor: str):
    """Silence the target's alerts for the action's duration, when Alertmanager is set."""
    adapter = adapters.get(ALERTMANAGER_SOURCE)
    if adapter is None or req.action not in SILENCED_ACTIONS or req.params.get("silence") is False:
        return None
    # The label that attaches alerts to services elsewhere in Quarterdeck names them here too.
    prometheus = qd.config.prometheus
    label = prometheus.alert_service_label if prometheus is not None else "service"
    matchers = [equal_matcher(label, req.service)]
    if req.instance:
        row = db.execute(
            select(Instance.address, Instance.port)
            .join(Service, Service.id == Instance.service_id)
            .where(Service.name == req.service, Instance.source_id == req.instance)
        ).first()
        named = f"{row.address}:{row.port}" if row and row.address and row.port else req.instance
        matchers.append(equal_matcher("instance", named))
    if req.action == "degrade":
        ends_at = req.params["until"]
    else:
        ends_at = iso(qd.clock() + timedelta(minutes=qd.config.actions.silence_minutes))
    target = f"{req.service}/{req.instance}" if req.instance else req.service
    comment = f"quarterdeck: {req.action} {target}" + (f": {req.reason}" if req.reason else "")
    return silence_step(
        adapter, matchers, ends_at, actor or "quarterdeck", comment, f"qd-{uuid.uuid4().hex[:16]}"
    )


def needs_approval(qd: Quarterdeck, req: ActionRequest) -> bool:
    """Tell whether the action waits for a second operator ([actions] require_approval)."""
    return qd.config.actions.require_approval and req.action in SERVICE_ACTIONS


def submit_action(
    qd: Quarterdeck,
    adapters: Mapping[str, Adapter],
    actor: str,
    req: ActionRequest,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Plan (dry run) or run an action; raise ActionRefused.

    With an Idempotency-Key (recorded on the audit row), an action this actor already started
    with it is answered instead of run again (`earlier_run`).
    """
    if req.dry_run:
        planned = plan_action(qd, adapters, req, actor)
        return {
            "id": None,
            "status": "planned",
            "action": req.action,
            "target": planned.target,
            "plan": [s.to_json() for s in planned.steps],
            "steps": [],
            "blast_radius": planned.blast_radius,
        }
    if idempotency_key is not None:
        target = f"{req.service}/{req.instance}" if req.instance else req.service
        earlier = earlier_run(qd, actor, idempotency_key, req.action, target)
        if earlier is not None:
            return earlier
    return _run(qd, adapters, actor, req, idempotency_key)


def earlier_run(
    qd: Quarterdeck, actor: str, key: str, action: str, target: str, runbook: str | None = None
) -> dict[str, Any] | None:
    """Return the result of what this actor already started with this key, if anything.

    The request's key is held by `app.idempotency` while it runs; this is the durable record
    beneath it, so a key whose hold lapsed (its process died, a Redis failover, `fail_open`)
    still never runs a second action. Raise ActionRefused(422) when the key started something
    else, ActionRefused(409) while that still runs.
    """
    with qd.store.session() as db:
        entry = entry_by_request_key(db, actor, key)
        if entry is None:
            return None
        if (entry.action, entry.target, entry.params.get("runbook")) != (action, target, runbook):
            raise ActionRefused(
                422, "idempotency_key_reused", "this Idempotency-Key was sent with another request"
            )
        if entry.status == "running":
            raise ActionRefused(
                409, "request_in_progress", "the first request with this Idempotency-Key still runs"
            )
        result = entry_json(entry, undone=bool(undone_ids(db, [entry.id])))
    if runbook is not None:
        result["runbook"] = runbook
    return result


def _run(qd, adapters, actor: str, req: ActionRequest, key: str | None) -> dict[str, Any]:
    planned = plan_action(qd, adapters, req, actor)
    if req.break_glass:
        if not needs_approval(qd, req):
            raise ActionRefused(
                422, "invalid", "break_glass: this action needs no approval; send it without"
            )
        log.warning(
            "BREAK GLASS: %s runs %s %s without approval: %s",
            actor, req.action, planned.target, req.reason,
        )  # fmt: skip
    elif needs_approval(qd, req):
        return _await_approval(qd, actor, planned, req, key)
    return _execute(
        qd, adapters, actor, planned, req.reason, req.params, None, key,
        break_glass=req.break_glass,
    )  # fmt: skip


def _await_approval(qd, actor: str, planned: PlannedAction, req: ActionRequest, key) -> dict:
    """Write the action as awaiting_approval: a second operator runs it with approve_action."""
    entry_id = uuid.uuid4().hex
    with qd.store.session(write=True) as db:
        add_entry(
            db,
            id=entry_id,
            at=qd.clock(),
            actor=actor,
            action=planned.action,
            target=planned.target,
            reason=req.reason,
            params=dict(req.params),
            plan=[s.to_json() for s in planned.steps],
            steps=[],
            blast_radius=planned.blast_radius,
            status="awaiting_approval",
            idempotency_key=key,
        )
        return entry_json(get_entry(db, entry_id), undone=False)


def approve_action(
    qd: Quarterdeck, adapters: Mapping[str, Adapter], approver: str, entry_id: str
) -> dict[str, Any]:
    """Run an action that awaits approval, planned afresh; the requester cannot approve it."""
    entry = _awaiting(qd, approver, entry_id, "approve")
    service, _, instance = entry.target.partition("/")
    req = ActionRequest(entry.action, service, instance or None, entry.params, entry.reason)
    planned = plan_action(qd, adapters, req, entry.actor)
    return _execute(
        qd, adapters, entry.actor, planned, entry.reason, entry.params, None, None,
        approve=(entry_id, approver),
    )  # fmt: skip


def reject_action(qd: Quarterdeck, rejecter: str, entry_id: str) -> dict[str, Any]:
    """Refuse an action that awaits approval: it never runs (the requester may withdraw it)."""
    with qd.store.session(write=True) as db:
        entry = get_entry(db, entry_id)
        if entry is None:
            raise ActionRefused(404, "not_found", f"no action {entry_id!r} in the audit")
        if not reject_entry(db, entry_id, rejecter, qd.clock()):
            raise ActionRefused(
                409, "not_awaiting_approval", f"action {entry_id} is {entry.status}"
            )
        db.expire_all()
        return entry_json(get_entry(db, entry_id), undone=False)


def _awaiting(qd: Quarterdeck, approver: str, entry_id: str, verb: str) -> AuditEntry:
    with qd.store.session() as db:
        entry = get_entry(db, entry_id)
        if entry is None:
            raise ActionRefused(404, "not_found", f"no action {entry_id!r} in the audit")
        if entry.status != "awaiting_approval":
            raise ActionRefused(
                409, "not_awaiting_approval", f"action {entry_id} is {entry.status}"
            )
        if entry.actor == approver:
            raise ActionRefused(
                403,
                "own_action",
                f"{approver} requested this action: another operator must {verb} it",
            )
        db.expunge(entry)
        return entry


def execute_planned(
    qd: Quarterdeck,
    adapters: Mapping[str, Adapter],
    actor: str,
    planned: PlannedAction,
    reason: str,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Run an already planned action under its target's lock (the expiry job's entry)."""
    return _execute(qd, adapters, actor, planned, reason, params, None, None)


def _execute(
    qd: Quarterdeck,
    adapters: Mapping[str, Adapter],
    actor: str,
    planned: PlannedAction,
    reason: str,
    params: Mapping[str, Any],
    undo_of: str | None,
    key: str | None,
    *,
    break_glass: bool = False,
    approve: tuple[str, str] | None = None,
) -> dict[str, Any]:
    entry_id = approve[0] if approve else uuid.uuid4().hex
    if not acquire_target_lock(qd.store, planned.target, entry_id, HOLDER, qd.clock(), LOCK_TTL_S):
        raise ActionRefused(
            409, "target_busy", f"another action on {planned.target} is running: try again after it"
        )
    try:
        plan = [s.to_json() for s in planned.steps]
        with qd.store.session(write=True) as db:
            if approve is not None:
                started = start_entry(
                    db, entry_id, plan, planned.blast_radius,
                    approved_by=approve[1], approved_at=qd.clock(),
                )  # fmt: skip
                if not started:
                    raise ActionRefused(
                        409, "not_awaiting_approval", f"action {entry_id} no longer awaits approval"
                    )
            else:
                add_entry(
                    db,
                    id=entry_id,
                    at=qd.clock(),
                    actor=actor,
                    action=planned.action,
                    target=planned.target,
                    reason=reason,
                    params=dict(params),
                    plan=plan,
                    steps=[],
                    blast_radius=planned.blast_radius,
                    status="running",
                    undo_of=undo_of,
                    idempotency_key=key,
                    break_glass=break_glass,
                )
        outcome = execute_steps(planned.steps, adapters)
        steps = [r.to_json() for r in outcome.results]
        with qd.store.session(write=True) as db:
            finish_entry(db, entry_id, steps, outcome.status, qd.clock())
            db.expire_all()
            entry = get_entry(db, entry_id)
            return entry_json(entry, undone=False)
    finally:
        release_target_lock(qd.store, planned.target, entry_id)


def undo_action(
    qd: Quarterdeck, adapters: Mapping[str, Adapter], actor: str, entry_id: str, reason: str = ""
) -> dict[str, Any]:
    """Run the inverse of exactly the steps an action changed; raise ActionRefused."""
    with qd.store.session() as db:
        entry = get_entry(db, entry_id)
        if entry is None:
            raise ActionRefused(404, "not_found", f"no action {entry_id!r} in the audit")
        if entry.status == "running":
            raise ActionRefused(409, "target_busy", "that action is still running")
        if undone_ids(db, [entry_id]):
            raise ActionRefused(409, "already_undone", f"action {entry_id} is already undone")
        steps = undo_steps(entry.steps, adapters)
        target, action = entry.target, entry.action
    if not steps:
        raise ActionRefused(409, "nothing_to_undo", f"action {entry_id} changed nothing")
    read_before(steps, adapters)
    planned = PlannedAction(f"undo {action}", target, steps, {})
    return _execute(
        qd, adapters, actor, planned, reason or f"undo of {entry_id}", {}, entry_id, None
    )


def entry_json(entry: AuditEntry, *, undone: bool) -> dict[str, Any]:
    """Render an audit row as an action result / `GET /api/v1/audit` entry (DESIGN §5)."""
    body: dict[str, Any] = {
        "id": entry.id,
        "at": iso(entry.at),
        "finished_at": iso(entry.finished_at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "status": entry.status,
        "reason": entry.reason,
        "params": entry.params,
        "plan": entry.plan,
        "steps": entry.steps,
        "blast_radius": entry.blast_radius,
        "undone": undone,
    }
    if entry.undo_of:
        body["undo_of"] = entry.undo_of
    body["break_glass"] = bool(entry.break_glass)
    body["approved_by"] = entry.approved_by
    body["approved_at"] = iso(entry.approved_at)
    if entry.status == "awaiting_approval":
        body["approve_url"] = f"/api/v1/actions/{entry.id}/approve"
        body["reject_url"] = f"/api/v1/actions/{entry.id}/reject"
    changed = any(s.get("changed") for s in entry.steps)
    if changed and not undone and entry.status != "running":
        body["undo_url"] = f"/api/v1/actions/{entry.id}/undo"
    return body
