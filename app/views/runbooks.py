"""Runbooks over the JSON API and on their page: list, plan, confirm, run, undo."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, render_template, request

from app.actions.running import undo_action
from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused
from app.auth.access import require
from app.auth.accounts import role_at_least
from app.idempotency import idempotency_key, idempotent_request
from app.runbooks.running import submit_runbook
from app.views.common import qd
from app.views.errors import json_error

api_bp = Blueprint("runbooks_api", __name__, url_prefix="/api/v1")
bp = Blueprint("runbooks", __name__)


def runbook_json(runbook) -> dict[str, Any]:
    """A runbook as `GET /api/v1/runbooks` lists it."""
    steps = []
    for number, step in enumerate(runbook.steps, start=1):
        body: dict[str, Any] = {"number": number, "kind": step.kind}
        if step.kind == "action":
            body.update(action=step.action, only=list(step.only), params=step.params)
        elif step.kind == "wait":
            body["seconds"] = step.seconds
        else:
            body.update(condition=step.condition, params=step.params)
            if step.kind == "wait_for":
                body["timeout_s"] = step.timeout_s
        if step.label:
            body["name"] = step.label
        steps.append(body)
    return {"name": runbook.name, "description": runbook.description,
            "target": runbook.target, "steps": steps}  # fmt: skip


@api_bp.get("/runbooks")
@require("viewer")
def runbooks():
    """Every runbook of `[runbooks] file` with its steps."""
    return jsonify({"runbooks": [runbook_json(r) for r in qd().config.runbook_book.values()]})


def parse_run_body(body: Any) -> dict[str, Any]:
    """Validate a run body; raise ActionRefused(422) naming the field."""
    if not isinstance(body, dict):
        raise ActionRefused(422, "invalid", "the body must be a JSON object")
    target = body.get("target")
    if isinstance(target, dict):
        service, instance = target.get("service"), target.get("instance")
        if not isinstance(service, str) or (instance is not None and not isinstance(instance, str)):
            raise ActionRefused(422, "invalid", "target.service must be a service name")
        target = f"{service}/{instance}" if instance else service
    unknown = sorted(set(body) - {"target", "reason", "dry_run", "force"})
    if unknown:
        raise ActionRefused(422, "invalid", f"{unknown[0]} is not a field of a runbook run")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 1000:
        raise ActionRefused(422, "invalid", "reason must be text of at most 1000 characters")
    for flag in ("dry_run", "force"):
        if not isinstance(body.get(flag, False), bool):
            raise ActionRefused(422, "invalid", f"{flag} must be true or false")
    return {"target": target, "reason": reason.strip(), "dry_run": body.get("dry_run", False),
            "force": body.get("force", False)}  # fmt: skip


@api_bp.post("/runbooks/<name>/run")
@require("operator")
@idempotent_request
def run(name: str):
    """Plan (dry_run) or run a runbook; `Idempotency-Key` makes a repeat return the first result."""
    key = idempotency_key()
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        fields = parse_run_body(request.get_json(silent=True))
        target = fields.pop("target")
        result = submit_runbook(ctx, adapters, g.identity.name, name, target,
                                idempotency_key=key, **fields)  # fmt: skip
        return jsonify(result)
    except ActionRefused as exc:
        return json_error(exc.status, exc.code, exc.message)
    finally:
        close_adapters(adapters)


def _page(status: int = 200, **context):
    ctx = qd()
    can_run = role_at_least(g.identity.role, "operator")
    page = render_template(
        "runbooks/index.html",
        runbooks=list(ctx.config.runbook_book.values()),
        can_run=can_run,
        **context,
    )
    return page, status


@bp.get("/runbooks")
@require("viewer")
def index():
    """The runbooks, each with a run form for operators."""
    return _page()


def _form_fields(name: str) -> dict[str, Any]:
    return {
        "target": (request.form.get("target") or "").strip(),
        "reason": (request.form.get("reason") or "").strip()[:1000],
        "force": request.form.get("force") == "on",
        "name": name,
    }


@bp.post("/runbooks/<name>/plan")
@require("operator")
def plan(name: str):
    """Plan a runbook against a target and ask to confirm it."""
    return _submit(name, dry_run=True)


@bp.post("/runbooks/<name>/run")
@require("operator")
def run_page(name: str):
    """Run a planned runbook and show its result."""
    return _submit(name, dry_run=False)


def _submit(name: str, *, dry_run: bool):
    fields = _form_fields(name)
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        result = submit_runbook(ctx, adapters, g.identity.name, name, fields["target"],
                                reason=fields["reason"], dry_run=dry_run,
                                force=fields["force"])  # fmt: skip
    except ActionRefused as exc:
        return _page(exc.status, asked=fields, error=exc.message)
    finally:
        close_adapters(adapters)
    key = "planned" if dry_run else "result"
    return _page(asked=fields, **{key: result})


@bp.post("/runbooks/undo/<entry_id>")
@require("operator")
def undo(entry_id: str):
    """Undo a runbook that ran, as a whole."""
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        result = undo_action(ctx, adapters, g.identity.name, entry_id)
    except ActionRefused as exc:
        return _page(exc.status, error=exc.message)
    finally:
        close_adapters(adapters)
    return _page(result=result, undone=True)
