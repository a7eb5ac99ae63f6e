"""Rules and their proposals over the JSON API and on their page; approve or dismiss."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for

from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused
from app.auth.access import require
from app.auth.accounts import role_at_least
from app.idempotency import idempotent_request
from app.rules.listing import rules_json
from app.rules.proposals import approve_proposal, dismiss_proposal
from app.rules.replay import replay_rules
from app.views.common import qd, query_number
from app.views.errors import json_error

api_bp = Blueprint("rules_api", __name__, url_prefix="/api/v1")
bp = Blueprint("rules", __name__)

MAX_REPLAY_H = 168


@api_bp.get("/rules")
@require("viewer")
def rules():
    """Every rule with its state and targets, and the proposals newest first."""
    limit = query_number(request.args, "limit", default=100, minimum=1, maximum=5000)
    with qd().store.session() as db:
        return jsonify(rules_json(db, qd().config, limit=limit))


@api_bp.get("/rules/replay")
@require("viewer")
def replay():
    """What the rules would have done over the last `hours` (24), from stored history."""
    hours = query_number(request.args, "hours", default=24, minimum=1, maximum=MAX_REPLAY_H)
    return jsonify(replay_rules(qd(), hours))


@api_bp.post("/rules/proposals/<proposal_id>/approve")
@require("operator")
@idempotent_request
def approve(proposal_id: str):
    """Run the proposal's runbook now; the answer is the run's result."""
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        return jsonify(approve_proposal(ctx, adapters, g.identity.name, proposal_id))
    except ActionRefused as exc:
        return json_error(exc.status, exc.code, exc.message)
    finally:
        close_adapters(adapters)


@api_bp.post("/rules/proposals/<proposal_id>/dismiss")
@require("operator")
@idempotent_request
def dismiss(proposal_id: str):
    """Dismiss a waiting proposal."""
    try:
        return jsonify(dismiss_proposal(qd(), g.identity.name, proposal_id))
    except ActionRefused as exc:
        return json_error(exc.status, exc.code, exc.message)


def _page(status: int = 200, **context):
    ctx = qd()
    with ctx.store.session() as db:
        body = rules_json(db, ctx.config, limit=50)
    page = render_template(
        "rules/index.html",
        rules=body["rules"],
        proposals=body["proposals"],
        replay=replay_rules(ctx, 24),
        can_run=role_at_least(g.identity.role, "operator"),
        **context,
    )
    return page, status


@bp.get("/rules")
@require("viewer")
def index():
    """The rules, their proposals and what they would have done over the last 24 h."""
    return _page()


@bp.post("/rules/proposals/<proposal_id>/approve")
@require("operator")
def approve_page(proposal_id: str):
    """Approve from the page: run, then show the result."""
    ctx = qd()
    adapters = configured_adapters(ctx.config)
    try:
        result = approve_proposal(ctx, adapters, g.identity.name, proposal_id)
    except ActionRefused as exc:
        return _page(exc.status, error=exc.message)
    finally:
        close_adapters(adapters)
    return _page(result=result)


@bp.post("/rules/proposals/<proposal_id>/dismiss")
@require("operator")
def dismiss_page(proposal_id: str):
    """Dismiss from the page, then back to where the form was."""
    try:
        dismiss_proposal(qd(), g.identity.name, proposal_id)
    except ActionRefused as exc:
        return _page(exc.status, error=exc.message)
    return redirect(url_for("rules.index"))
