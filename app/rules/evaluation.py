"""One evaluation cycle of `[[rules]]`: find, hold for `for_s`, then propose, run or refuse.

Every decision is an audit entry with the evidence that triggered it: `proposed`, `dry-run`,
`refused` (naming the limit), or the runbook's own entry when it ran (actor `rule:<name>`).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused, Adapter
from app.collection.registry import configured_sources
from app.config import RuleConfig
from app.context import Quarterdeck
from app.models import Instance, RuleProposal, Service
from app.queries.sources import iso, source_views
from app.rules.conditions import RULE_CONDITIONS
from app.runbooks.running import execute_runbook, plan_runbook
from app.store.audit import add_entry
from app.store.rules import (
    automated_runs_by_service,
    expire_proposals,
    forget_unconfigured_rules,
    hour_ago,
    open_proposal_targets,
    record_decision,
    sync_rule_states,
)

log = logging.getLogger(__name__)
JOB_ID = "rules"
# The live topic of proposals: the Overview's live part follows it (docs/ui.md).
RULES_TOPIC = "rules"


class Refusal(Exception):  # noqa: N818 (a decision, not a bug)
    """A limit that kept a rule from acting: `limit` names it, `detail` says what was seen."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(detail)
        self.limit, self.detail = limit, detail


def evaluate_rules(qd: Quarterdeck) -> dict[str, int]:
    """Run one cycle of every rule; return how many decisions of each kind were made."""
    rules = qd.config.rules
    counts: dict[str, int] = {}
    if not rules:
        return counts
    now = qd.clock()
    due: list[tuple[RuleConfig, str, dict[str, Any], str]] = []
    with qd.store.session(write=True) as db:
        forget_unconfigured_rules(db, [rule.name for rule in rules])
        for rule in rules:
            condition = RULE_CONDITIONS[rule.when]
            found = condition.find(db, now, rule.params, qd.config)
            states = sync_rule_states(db, rule.name, found, now)
            waiting = open_proposal_targets(db, rule.name)
            expire_proposals(db, [pid for t, pid in waiting.items() if t not in found], now)
            for target, state in states.items():
                if state.decision in ("", "refused") and (now - state.since_at).total_seconds() >= (
                    rule.for_s
                ):
                    evidence = {**found[target], "held_since": iso(state.since_at)}
                    due.append((rule, target, evidence, state.refusal))
        views = {
            v.name: v
            for v in source_views(
                db, configured_sources(qd.config, qd.clock), now, qd.unrecorded
            )  # fmt: skip
        }
        runs = automated_runs_by_service(db, hour_ago(now))
    if not due:
        return counts
    adapters = configured_adapters(qd.config)
    try:
        for rule, target, evidence, last_refusal in due:
            decision = decide(qd, adapters, rule, target, evidence, views, runs, last_refusal)
            counts[decision] = counts.get(decision, 0) + 1
    finally:
        close_adapters(adapters)
    if counts:
        qd.feed.publish({RULES_TOPIC})
    return counts


def decide(
    qd: Quarterdeck,
    adapters: Mapping[str, Adapter],
    rule: RuleConfig,
    target: str,
    evidence: dict[str, Any],
    views: Mapping[str, Any],
    runs: dict[str, int],
    last_refusal: str = "",
) -> str:
    """Decide one due target: refuse on a limit, else dry-run, propose or run; audit it."""
    runbook = qd.config.runbook_book[rule.runbook]
    service, _, instance = target.partition("/")
    instance = instance if runbook.target == "instance" else None
    run_target = f"{service}/{instance}" if instance else service
    now = qd.clock()
    planned = None
    try:
        _check_fresh(rule, evidence, views)
        if instance:
            _check_others_healthy(qd, service, instance)
        if rule.mode == "auto" and runs.get(service, 0) >= rule.max_per_hour:
            raise Refusal(
                "rate_limit",
                f"{runs[service]} automated runs on {service} in the last hour "
                f"(max_per_hour = {rule.max_per_hour})",
            )
        try:
            planned = plan_runbook(
                qd, adapters, runbook, service, instance, _reason(rule), actor=f"rule:{rule.name}"
            )
        except ActionRefused as exc:
            raise Refusal(exc.code, exc.message) from exc
    except Refusal as refusal:
        if refusal.limit != last_refusal:
            _audit(qd, rule, run_target, "refused", evidence, [], limit=refusal.limit,
                   detail=refusal.detail)  # fmt: skip
        _record(qd, rule, target, "refused", refusal.limit, now)
        return "refused"
    plan = planned.plan_rows()
    if rule.mode == "dry-run":
        _audit(qd, rule, run_target, "dry-run", evidence, plan)
        _record(qd, rule, target, "dry-run", "", now)
        return "dry-run"
    if rule.mode == "propose":
        proposal_id = uuid.uuid4().hex
        with qd.store.session(write=True) as db:
            db.add(RuleProposal(id=proposal_id, rule=rule.name, target=run_target,
                                runbook=rule.runbook, at=now, plan=plan, evidence=evidence,
                                state="proposed", decided_by="", delivery=""))  # fmt: skip
        _audit(qd, rule, run_target, "proposed", evidence, plan, proposal=proposal_id)
        _record(qd, rule, target, "proposed", "", now)
        _send_webhook(qd, proposal_id)
        return "proposed"
    try:
        execute_runbook(qd, adapters, f"rule:{rule.name}", planned, _reason(rule),
                        evidence={**evidence, "rule": rule.name})  # fmt: skip
    except ActionRefused as exc:
        _audit(qd, rule, run_target, "refused", evidence, plan, limit=exc.code, detail=exc.message)
        _record(qd, rule, target, "refused", exc.code, now)
        return "refused"
    runs[service] = runs.get(service, 0) + 1
    _record(qd, rule, target, "ran", "", now)
    return "ran"


def _reason(rule: RuleConfig) -> str:
    return f"rule {rule.name}: {rule.when} held for {rule.for_s} s"


def _check_fresh(rule: RuleConfig, evidence: Mapping[str, Any], views: Mapping[str, Any]) -> None:
    stale = list(evidence.get("stale", []))
    for name in rule.needs or evidence.get("sources", []):
        view = views.get(name)
        if view is None:
            stale.append(f"{name} (not configured)")
        elif view.stale:
            stale.append(f"{name} ({view.status})")
    if stale:
        raise Refusal("stale_source", f"needed sources are stale: {', '.join(stale)}")


def _check_others_healthy(qd: Quarterdeck, service: str, instance: str) -> None:
    with qd.store.session() as db:
        others = db.scalar(
            select(func.count())
            .select_from(Instance)
            .join(Service, Service.id == Instance.service_id)
            .where(
                Service.name == service,
                Instance.gone_at.is_(None),
                Instance.source_id != instance,
                Instance.health == "passing",
                Instance.maintenance.is_(False),
            )
        )
    if not others:
        raise Refusal(
            "last_healthy_instance",
            f"no other instance of {service} is passing: taking {instance} out leaves none",
        )


def _record(qd, rule: RuleConfig, target: str, decision: str, refusal: str, now) -> None:
    with qd.store.session(write=True) as db:
        record_decision(db, rule.name, target, decision, refusal, now)


def _audit(
    qd: Quarterdeck,
    rule: RuleConfig,
    target: str,
    decision: str,
    evidence: Mapping[str, Any],
    plan: list,
    *,
    limit: str = "",
    detail: str = "",
    proposal: str = "",
) -> None:
    params: dict[str, Any] = {
        "rule": rule.name, "mode": rule.mode, "runbook": rule.runbook, "when": rule.when,
        "decision": decision, "evidence": dict(evidence),
    }  # fmt: skip
    if limit:
        params["limit"] = limit
    if proposal:
        params["proposal"] = proposal
    reason = _reason(rule) + (f"; refused ({limit}): {detail}" if limit else "")
    with qd.store.session(write=True) as db:
        add_entry(db, id=uuid.uuid4().hex, at=qd.clock(), finished_at=qd.clock(),
                  actor=f"rule:{rule.name}", action="rule", target=target, reason=reason,
                  params=params, plan=plan, steps=[], blast_radius={}, status=decision,
                  undo_of=None, idempotency_key=None)  # fmt: skip
    log.info("rule %s on %s: %s%s", rule.name, target, decision, f" ({limit})" if limit else "")


def proposal_json(row: RuleProposal) -> dict[str, Any]:
    """A proposal as `GET /api/v1/rules` lists it (DESIGN §5)."""
    return {
        "id": row.id,
        "rule": row.rule,
        "target": row.target,
        "runbook": row.runbook,
        "plan": row.plan,
        "evidence": row.evidence,
        "at": iso(row.at),
        "state": row.state,
        "decided_by": row.decided_by or None,
        "decided_at": iso(row.decided_at),
        "audit_id": row.audit_id,
        "delivery": row.delivery or None,
    }


def _send_webhook(qd: Quarterdeck, proposal_id: str) -> None:
    """POST the proposal as JSON to `[automation] webhook_url`; keep what it answered."""
    section = qd.config.automation
    if not section.webhook_url:
        return
    with qd.store.session() as db:
        body = {
            "kind": "quarterdeck.proposal",
            "proposal": proposal_json(db.get(RuleProposal, proposal_id)),
        }
    headers = {"Content-Type": "application/json", "User-Agent": "quarterdeck"}
    token = os.environ.get(section.webhook_token_env, "") if section.webhook_token_env else ""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked at config load)
        section.webhook_url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=section.webhook_timeout_s) as response:  # noqa: S310
            delivery = f"sent: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        delivery = f"failed: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        delivery = f"failed: {getattr(exc, 'reason', exc)}"
    if delivery.startswith("failed"):
        log.warning("webhook for proposal %s %s", proposal_id, delivery)
    with qd.store.session(write=True) as db:
        db.get(RuleProposal, proposal_id).delivery = delivery[:500]
