"""The actions UI: plan → confirm → result pages, the Actions & audit page, and undo.

Each page is one template that renders whole or, for htmx, as its part alone (the service
page opens the plan in a panel). Without JavaScript every step is a plain link or form post.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, g, redirect, render_template, request, url_for

from app.actions.background import start_action, start_undo
from app.actions.interrupted import recover_interrupted
from app.actions.params import PARAMETERS
from app.actions.running import (
    ACTIONS,
    ActionRequest,
    entry_json,
    parse_action_request,
    plan_action,
)
from app.actions.services import SERVICE_ACTIONS
from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused, read_before, undo_steps
from app.actions.waiting import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S
from app.auth.access import require
from app.auth.accounts import role_at_least
from app.idempotency import KeyRefused, run_once
from app.quoting import quote_input
from app.store.audit import get_entry, list_entries, undone_ids, undos_of
from app.views.common import qd, query_number
from app.views.map_query import parse_duration, parse_time

bp = Blueprint("action_pages", __name__)

PAGE_SIZE = 50
# The page's filters that GET /api/v1/audit takes as they are.
API_FILTERS = ("actor", "action", "target", "status", "since", "until")
STATUSES = ("running", "done", "partial", "failed", "interrupted")
_ON = ("1", "true", "on", "yes")
_OFF = ("0", "false", "off", "no")
VERBS = {"drain": "Drain", "ready": "Ready", "degrade": "Degrade", "restore": "Restore",
         "canary": "Canary step", "rollback": "Roll back"}  # fmt: skip


@bp.app_context_processor
def _can_act():
    identity = getattr(g, "identity", None)
    return {"can_act": identity is not None and role_at_least(identity.role, "operator")}


def _render(page: str, part: str, status: int = 200, **context):
    template = part if request.headers.get("HX-Request") else page
    return render_template(template, part=part, **context), status


# --- plan and confirmation ---------------------------------------------------------------------


def _request_from(args) -> ActionRequest:
    """Read the action asked for from a query string or a form; raise ActionRefused(422)."""
    action = args.get("action") or ""
    target = {"service": args.get("service") or ""}
    if args.get("instance"):
        target["instance"] = args["instance"]
    body = {"action": action, "target": target, "params": form_params(action, args)}
    body["reason"] = (args.get("reason") or "")[:1001]
    return parse_action_request(body, qd().clock())


def form_params(action: str, args) -> dict[str, Any]:
    """Read an action's params from form fields by its parameter schema (`PARAMETERS`).

    Each field becomes the JSON the API takes — digits a number, on/off a boolean, a comma
    list a list; an empty field is left out; anything else goes on as text, so the API's
    validation refuses it with a message naming the field. Of repeated fields (a hidden
    "0" before its checkbox) the last counts.
    """
    params: dict[str, Any] = {}
    for name, param in PARAMETERS.get(action, {}).items():
        values = [v.strip() for v in args.getlist(name)]
        if param.kind == "list":
            names = [n.strip() for v in values for n in v.replace("\n", ",").split(",")]
            if any(names):
                params[name] = [n for n in names if n]
            continue
        raw = values[-1] if values else ""
        if not raw:
            continue
        if param.kind == "bool":
            params[name] = True if raw in _ON else False if raw in _OFF else raw
        elif param.kind == "whole" and raw.isascii() and raw.isdigit() and len(raw) <= 9:
            params[name] = int(raw)
        else:
            params[name] = raw
    for name, param in PARAMETERS.get(action, {}).items():
        if param.needs and name in params and params.get(param.needs) is not True:
            del params[name]
    return params


def _field_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def _plan(req: ActionRequest):
    """Plan the action; a drain of the last healthy instance is planned with force, and says so."""
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        try:
            return plan_action(ctx, adapters, req, g.identity.name), False
        except ActionRefused as exc:
            if exc.code != "last_healthy_instance":
                raise
        forced = replace(req, params={**req.params, "force": True})
        return plan_action(ctx, adapters, forced, g.identity.name), True
    finally:
        close_adapters(adapters)


def needs_typed_name(req: ActionRequest, last_healthy: bool) -> bool:
    """Wide scope (a whole service) and a forced drain of the last healthy instance need the
    service's name typed out."""
    return req.instance is None or last_healthy or bool(req.params.get("force"))


def _flow_args(req: ActionRequest) -> dict[str, str]:
    """The request as the next part's link or hidden fields: its parsed params, so the run
    does what the plan showed (a degrade's `until` as planned, not recomputed)."""
    args = {"action": req.action, "service": req.service}
    if req.instance:
        args["instance"] = req.instance
    for name, value in req.params.items():
        if name != "force" and name in PARAMETERS[req.action]:  # force: the confirmation's box
            args[name] = _field_value(value)
    if req.reason:
        args["reason"] = req.reason
    return args


def verb_of(req: ActionRequest) -> str:
    """The action's verb as its buttons say it."""
    if req.action == "canary" and req.params.get("abort"):
        return "Abort canary"
    return VERBS.get(req.action, req.action)


def _refusal(exc: ActionRefused, args=None):
    args = request.args if args is None else args
    action = args.get("action") or ""
    return _render(
        "actions/refused.html",
        "actions/_refused.html",
        status=exc.status,
        error=exc,
        back=_back_url(args),
        retry=_retry(exc, args) if action in SERVICE_ACTIONS else None,
    )


def _retry(exc: ActionRefused, args) -> dict[str, Any] | None:
    """For a refused parameter, the form again with the values sent and the field marked."""
    named = re.match(r"params(?:\.(\w+))?\b", exc.message)
    if named is None:
        return None
    values = {}
    for name, param in PARAMETERS[args["action"]].items():
        sent = args.getlist(name)
        if sent:
            values[name] = ", ".join(sent) if param.kind == "list" else sent[-1]
    kept = {k: args.get(k) or "" for k in ("action", "service", "reason")}
    return {"bad": named.group(1) or "params", "fields": values, "args": kept}


def _back_url(args) -> str:
    service = args.get("service")
    return url_for("services.detail", name=service) if service else url_for("action_pages.index")


@bp.get("/actions/plan")
@require("operator")
def plan():
    """Show an action's plan: each step's source, exact change and current value; blast radius."""
    try:
        req = _request_from(request.args)
        planned, last_healthy = _plan(req)
    except ActionRefused as exc:
        return _refusal(exc)
    return _render(
        "actions/plan.html",
        "actions/_plan.html",
        req=req,
        planned=planned,
        plan_json=[s.to_json() for s in planned.steps],
        last_healthy=last_healthy,
        args=_flow_args(req),
        verb=verb_of(req),
        default_timeout=DEFAULT_TIMEOUT_S,
        max_timeout=MAX_TIMEOUT_S,
        silence_offered=qd().config.alertmanager is not None,
    )


@bp.get("/actions/confirm")
@require("operator")
def confirm():
    """Ask for the confirmation: reason, the typed name when the scope is wide, force."""
    try:
        req = _request_from(request.args)
        planned, last_healthy = _plan(req)
    except ActionRefused as exc:
        return _refusal(exc)
    return _confirm_page(req, planned, last_healthy)


def _confirm_page(req, planned, last_healthy, error=None, status=200, form=None):
    return _render(
        "actions/confirm.html",
        "actions/_confirm.html",
        status=status,
        req=req,
        planned=planned,
        plan_json=[s.to_json() for s in planned.steps],
        last_healthy=last_healthy,
        typed_name=needs_typed_name(req, last_healthy),
        args=_flow_args(req),
        verb=verb_of(req),
        error=error,
        form=form or {},
        request_key=(form or {}).get("request_key") or secrets.token_urlsafe(18),
    )


@bp.post("/actions/run")
@require("operator")
def run():
    """Run the confirmed action once per form (its request key); show its result page."""
    form = request.form
    try:
        req = _request_from(form)
    except ActionRefused as exc:
        return _refusal(exc, form)
    key = form.get("request_key") or ""
    problem = None
    if not 16 <= len(key) <= 64 or not (key.isascii() and key.isprintable()):
        problem = ActionRefused(422, "invalid", "the form lost its request key: open it again")
    elif needs_typed_name(req, False) and (form.get("confirm_name") or "").strip() != req.service:
        problem = ActionRefused(
            422, "confirm_name", f"type the service name {req.service!r} exactly to confirm"
        )
    if problem is None:
        try:
            answer = run_once(key, req.fingerprint(), lambda: _start(req, key))
        except KeyRefused as exc:
            problem = ActionRefused(exc.status, exc.code, exc.message)
        except ActionRefused as exc:
            problem = exc
        else:
            if request.headers.get("HX-Request"):
                return result(answer.headers["Location"].rsplit("/", 1)[1])
            return answer
    try:
        planned, last_healthy = _plan(replace(req, params={k: v for k, v in req.params.items()
                                                            if k != "force"}))  # fmt: skip
    except ActionRefused as exc:
        return _refusal(exc, form)
    return _confirm_page(req, planned, last_healthy, problem, problem.status, form)


def _start(req: ActionRequest, key: str):
    """Start the action; the answer kept for the form's key is the redirect to its result."""
    entry_id = start_action(qd(), g.identity.name, req, key)
    return redirect(url_for("action_pages.result", entry_id=entry_id), 303)


def _to_result(entry_id: str):
    if request.headers.get("HX-Request"):
        return result(entry_id)
    return redirect(url_for("action_pages.result", entry_id=entry_id), 303)


# --- result and undo ---------------------------------------------------------------------------


def _entry_or_404(entry_id: str) -> dict:
    ctx = qd()
    recover_interrupted(ctx)
    with ctx.store.session() as db:
        entry = get_entry(db, entry_id)
        if entry is None:
            abort(404, f"No action {quote_input(entry_id)} is in the audit.")
        body = entry_json(entry, undone=bool(undone_ids(db, [entry_id])))
        body["undos"] = [{"id": u.id, "status": u.status} for u in undos_of(db, entry_id)]
    return body


@bp.get("/actions/<entry_id>")
@require("viewer")
def result(entry_id: str):
    """One action as it ran (or runs): each step's result and read-back, the undo."""
    entry = _entry_or_404(entry_id)
    return _render("actions/result.html", "actions/_result.html", e=entry)


@bp.get("/actions/<entry_id>/undo")
@require("operator")
def undo_confirm(entry_id: str):
    """Show what the undo will change (each inverse step with its current value) and ask."""
    entry = _entry_or_404(entry_id)
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        if entry.get("undone"):
            raise ActionRefused(409, "already_undone", f"action {entry_id} is already undone")
        if entry["status"] == "running":
            raise ActionRefused(409, "target_busy", "that action is still running")
        steps = undo_steps(entry["steps"], adapters)
        if not steps:
            raise ActionRefused(409, "nothing_to_undo", f"action {entry_id} changed nothing")
        read_before(steps, adapters)
    except ActionRefused as exc:
        return _undo_refused(exc, entry_id)
    finally:
        close_adapters(adapters)
    return _render(
        "actions/undo.html",
        "actions/_undo.html",
        e=entry,
        steps=steps,
        undo_json=[s.to_json() for s in steps],
    )


@bp.post("/actions/<entry_id>/undo")
@require("operator")
def undo(entry_id: str):
    """Undo exactly what the action changed; show the undo's own result."""
    reason = (request.form.get("reason") or "").strip()
    try:
        if len(reason) > 1000:
            raise ActionRefused(422, "invalid", "reason must be at most 1000 characters")
        new_id = start_undo(qd(), g.identity.name, entry_id, reason)
    except ActionRefused as exc:
        return _undo_refused(exc, entry_id)
    return _to_result(new_id)


def _undo_refused(exc: ActionRefused, entry_id: str):
    back = url_for("action_pages.result", entry_id=entry_id)
    page, part = "actions/refused.html", "actions/_refused.html"
    return _render(page, part, exc.status, error=exc, back=back)


# --- the Actions & audit page ------------------------------------------------------------------


def _time_arg(name: str, now: datetime) -> datetime | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    ago = parse_duration(raw)
    if ago is not None:
        return now - ago
    at = parse_time(raw)
    if at is None:
        abort(400, f"{name} must be a duration like 1h or 7d, or an RFC 3339 time, not "
                   f"{quote_input(raw)}")  # fmt: skip
    return at.astimezone(UTC)


@bp.get("/actions")
@require("viewer")
def index():
    """Every action newest first, filtered by actor, action, target, status and time."""
    ctx = qd()
    now = ctx.clock()
    status = (request.args.get("status") or "").strip()
    if status and status not in STATUSES:
        abort(400, f"status must be one of {', '.join(STATUSES)}, not {quote_input(status)}")
    action = (request.args.get("action") or "").strip()[:40]
    flt = {
        "actor": (request.args.get("actor") or "").strip()[:255],
        "action": action,
        "target": (request.args.get("target") or "").strip()[:600],
        "status": status,
        "since": (request.args.get("since") or "").strip()[:40],
        "until": (request.args.get("until") or "").strip()[:40],
    }
    since, until = _time_arg("since", now), _time_arg("until", now)
    offset = query_number(request.args, "offset", default=0)
    recover_interrupted(ctx)
    with ctx.store.session() as db:
        rows, total = list_entries(
            db,
            limit=PAGE_SIZE,
            offset=offset,
            target=flt["target"] or None,
            action=action or None,
            actor=flt["actor"] or None,
            since=since,
            status=status or None,
            until=until,
        )
        undone = undone_ids(db, [r.id for r in rows])
        entries = [entry_json(r, undone=r.id in undone) for r in rows]
    kept = {k: v for k, v in flt.items() if v}
    pages = {}
    if offset > 0:
        newer = max(offset - PAGE_SIZE, 0)
        pages["previous"] = "?" + urlencode({**kept, **({"offset": newer} if newer else {})})
    if offset + len(entries) < total:
        pages["next"] = "?" + urlencode({**kept, "offset": offset + PAGE_SIZE})
    return _render(
        "actions/index.html",
        "actions/_audit.html",
        entries=entries,
        total=total,
        offset=offset,
        flt=flt,
        pages=pages,
        statuses=STATUSES,
        # Every kind the audit holds: actions and their undos, runbook runs (and their undo),
        # and rules' decisions.
        actions=sorted(
            {*ACTIONS, *(f"undo {a}" for a in ACTIONS), "runbook", "undo runbook", "rule"}
        ),  # fmt: skip
        live_src=url_for("action_pages.index", **kept, **({"offset": offset} if offset else {})),
        api_url=url_for("actions.audit", **{k: v for k, v in kept.items() if k in API_FILTERS}),
    )
