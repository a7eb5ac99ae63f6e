"""Approve or dismiss a rule's proposal: one click, re-planned against the fleet as it is now."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from app.actions.steps import ActionRefused, Adapter
from app.context import Quarterdeck
from app.models import RuleProposal
from app.rules.evaluation import RULES_TOPIC, proposal_json
from app.runbooks.running import submit_runbook
from app.store.audit import add_entry
from app.store.rules import claim_proposal, finish_proposal


def approve_proposal(
    qd: Quarterdeck, adapters: Mapping[str, Adapter], actor: str, proposal_id: str
) -> dict[str, Any]:
    """Run the proposal's runbook as `actor`; the answer is the run's result."""
    proposal = _get(qd, proposal_id)
    with qd.store.session(write=True) as db:
        if not claim_proposal(db, proposal_id, actor, qd.clock()):
            raise ActionRefused(409, "not_proposed", f"proposal {proposal_id} is {proposal.state}")
    try:
        result = submit_runbook(
            qd, adapters, actor, proposal.runbook, proposal.target,
            reason=f"approved proposal {proposal_id} of rule {proposal.rule}",
            evidence={**proposal.evidence, "rule": proposal.rule, "proposal": proposal_id},
        )  # fmt: skip
    except BaseException:
        with qd.store.session(write=True) as db:
            finish_proposal(db, proposal_id, "proposed", None)
        raise
    with qd.store.session(write=True) as db:
        finish_proposal(db, proposal_id, "ran", result["id"])
    qd.feed.publish({RULES_TOPIC})
    return {**result, "proposal": proposal_id}


def dismiss_proposal(qd: Quarterdeck, actor: str, proposal_id: str) -> dict[str, Any]:
    """Dismiss a waiting proposal; audited."""
    proposal = _get(qd, proposal_id)
    now = qd.clock()
    with qd.store.session(write=True) as db:
        if not claim_proposal(db, proposal_id, actor, now):
            raise ActionRefused(409, "not_proposed", f"proposal {proposal_id} is {proposal.state}")
        finish_proposal(db, proposal_id, "dismissed", None)
        row = db.get(RuleProposal, proposal_id)
        row.decided_by, row.decided_at = actor, now
        add_entry(db, id=uuid.uuid4().hex, at=now, finished_at=now, actor=actor, action="rule",
                  target=proposal.target, reason=f"dismissed proposal {proposal_id}",
                  params={"rule": proposal.rule, "decision": "dismissed",
                          "proposal": proposal_id, "evidence": proposal.evidence},
                  plan=proposal.plan, steps=[], blast_radius={}, status="dismissed",
                  undo_of=None, idempotency_key=None)  # fmt: skip
        db.flush()
        body = proposal_json(row)
    qd.feed.publish({RULES_TOPIC})
    return body


def _get(qd: Quarterdeck, proposal_id: str) -> RuleProposal:
    with qd.store.session() as db:
        proposal = db.get(RuleProposal, proposal_id)
        if proposal is None:
            raise ActionRefused(404, "not_found", f"no proposal {proposal_id!r}")
        db.expunge(proposal)
    return proposal
