"""The rules as `GET /api/v1/rules` and the Rules page show them: state, targets, proposals."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.config import Config
from app.queries.sources import iso
from app.rules.evaluation import proposal_json
from app.store.rules import list_proposals, rule_states


def rules_json(db: Session, config: Config, *, limit: int = 100) -> dict[str, Any]:
    """Each rule with its state (idle, holding, decided) and the proposals, newest first."""
    by_rule: dict[str, list] = {}
    for row in rule_states(db):
        by_rule.setdefault(row.rule, []).append(row)
    rules = []
    for rule in config.rules:
        rows = by_rule.get(rule.name, [])
        state = "idle" if not rows else ("decided" if all(r.decision for r in rows) else "holding")
        rules.append({
            "name": rule.name, "mode": rule.mode, "state": state, "when": rule.when,
            "runbook": rule.runbook, "for_s": rule.for_s, "max_per_hour": rule.max_per_hour,
            "params": rule.params,
            "targets": [
                {"target": r.target, "since": iso(r.since_at), "decision": r.decision or None,
                 "refusal": r.refusal or None, "decided_at": iso(r.decided_at)}
                for r in rows
            ],
        })  # fmt: skip
    proposals = [proposal_json(p) for p in list_proposals(db, limit=limit)]
    return {"rules": rules, "proposals": proposals}


def waiting_proposals(db: Session, limit: int = 10) -> list[dict[str, Any]]:
    """Proposals still waiting for an operator, newest first (for the Overview)."""
    return [proposal_json(p) for p in list_proposals(db, limit=limit, states=("proposed",))]
