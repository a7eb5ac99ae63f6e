"""Actions and their audit over the JSON API (DESIGN §5, §7)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, g, jsonify, request

from app.actions.interrupted import recover_interrupted
from app.actions.running import (
    approve_action,
    entry_json,
    parse_action_request,
    reject_action,
    submit_action,
    undo_action,
)
from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused
from app.auth.access import require
from app.auth.accounts import role_at_least
from app.idempotency import idempotency_key, idempotent_request
from app.quoting import quote_input
from app.store.audit import list_entries, undone_ids
from app.views.common import qd, query_number
from app.views.errors import json_error
from app.views.map_query import parse_duration

bp = Blueprint("actions", __name__, url_prefix="/api/v1")

AUDIT_STATUSES = ("running", "done", "partial", "failed", "interrupted")


@bp.post("/actions")
@require("operator")
@idempotent_request
def submit():
    """Plan (dry_run) or run an action; `Idempotency-Key` makes a repeat return the first result."""
    key = idempotency_key()
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        req = parse_action_request(request.get_json(silent=True), ctx.clock())
        if req.break_glass and not role_at_least(g.identity.role, "admin"):
            return json_error(403, "forbidden", "break_glass needs the admin role")
        result = submit_action(ctx, adapters, g.identity.name, req, key)
        return jsonify(result), 202 if result["status"] == "awaiting_approval" else 200
    except ActionRefused as exc:
        return json_error(exc.status, exc.code, exc.message)
    finally:
        close_adapters(adapters)


@bp.post("/actions/<entry_id>/undo")
@require("operator")
@idempotent_request
def undo(entry_id: str):
    """Undo exactly what an action changed; the answer is the undo's own result."""
    body = request.get_json(silent=True) or {}
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    if not isinstance(reason, str) or len(reason) > 1000:
        return json_error(422, "invalid", "reason must be text of at most 1000 characters")
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        return jsonify(undo_action(ctx, adapters, g.identity.name, entry_id, reason.strip()))
    except ActionRefused as exc:
        return json_error(exc.status, exc.code, exc.message)
    finally:
        close_adapters(adapters)


@bp.post("/actions/<entry_id>/approve")
@require("operator")
@idempotent_request
def approve(entry_id: str):
    """Approve an action that awaits a second operator, and run it."""
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        return jsonify(approve_action(ctx, adapters, g.identity.name, entry_id))
    except ActionRefused as exc:
        return json_error(exc.status, exc.code, exc.message)
    finally:
        close_adapters(adapters)


@bp.post("/actions/<entry_id>/reject")
@require("operator")
@idempotent_request
def reject(entry_id: str):
    """Refuse an action that awaits approval: it never runs."""
    try:
        return jsonify(reject_action(qd(), g.identity.name, entry_id))
    except ActionRefused as exc:
        return json_error(exc.status, exc.code, exc.message)


@bp.get("/audit")
@require("viewer")
def audit():
    """List audit entries, newest first, filtered by target, action, actor, status and time."""
    limit = query_number(request.args, "limit", default=100, minimum=1, maximum=5000)
    offset = query_number(request.args, "offset", default=0)
    since = _since(request.args.get("since"))
    until = _since(request.args.get("until"), "until")
    status = request.args.get("status") or None
    if status is not None and status not in AUDIT_STATUSES:
        abort(400, f"status must be one of {', '.join(AUDIT_STATUSES)}, not {quote_input(status)}")
    recover_interrupted(qd())
    with qd().store.session() as db:
        rows, total = list_entries(
            db,
            limit=limit,
            offset=offset,
            target=request.args.get("target") or None,
            action=request.args.get("action") or None,
            actor=request.args.get("actor") or None,
            since=since,
            status=status,
            until=until,
        )
        undone = undone_ids(db, [r.id for r in rows])
        entries = [entry_json(r, undone=r.id in undone) for r in rows]
    return jsonify({"entries": entries, "total": total})


def _since(raw: str | None, name: str = "since") -> datetime | None:
    if not raw:
        return None
    ago = parse_duration(raw)
    if ago is not None:
        return qd().clock() - ago
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        abort(
            400,
            f"{name} must be an RFC 3339 time with a zone or a duration like 1h, not "
            f"{quote_input(raw)}",
        )
    return value.astimezone(UTC)
