"""Plan a runbook as a whole, run it under one target lock, audit it as one entry.

Each action step is planned by the action framework (`plan_action`), so any action kind it
knows by name can be a step. The audit entry's `steps` are every source change in order plus
one row per wait or check, so `undo_action` reverses the whole runbook, last change first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.actions.running import (
    HOLDER,
    LOCK_TTL_S,
    ActionRequest,
    earlier_run,
    entry_json,
    plan_action,
)
from app.actions.services import SERVICE_ACTIONS, parse_service_params
from app.actions.steps import ActionRefused, Adapter, Step, StepResult, execute_steps
from app.context import Quarterdeck
from app.runbooks.book import Runbook, RunbookStep
from app.runbooks.conditions import CONDITIONS
from app.store.audit import (
    acquire_target_lock,
    add_entry,
    finish_entry,
    get_entry,
    release_target_lock,
)

RUNBOOK_SOURCE = "runbook"  # the `source` of a wait or check row: no source is changed
POLL_S = 1.0


@dataclass
class PlannedPart:
    """One runbook step as planned: its source changes, or the wait/check it will do."""

    number: int
    step: RunbookStep
    changes: list[Step] = field(default_factory=list)
    now: str = ""  # a condition's verdict at planning time
    blast_radius: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Say what the step does, as a person reads it."""
        s = self.step
        if s.kind == "action":
            only = f" on {', '.join(s.only)}" if s.only else ""
            return f"{s.action}{only}"
        if s.kind == "wait":
            return f"wait {s.seconds:g} s"
        verb = "wait for" if s.kind == "wait_for" else "check"
        limit = f" (at most {s.timeout_s:g} s)" if s.kind == "wait_for" else ""
        return f"{verb} {s.condition}{_params_text(s.params)}{limit}"

    def pseudo_row(self) -> dict[str, Any]:
        """A wait/check as a `plan[]` row: no source, nothing set."""
        return {
            "source": RUNBOOK_SOURCE,
            "kind": self.step.kind,
            "target": {},
            "change": self.describe(),
            "set": {},
            "before": None,
            "read_error": None,
            "runbook_step": self.number,
            "now": self.now or None,
        }

    def plan_rows(self) -> list[dict[str, Any]]:
        """This part's `plan[]` rows."""
        if self.step.kind != "action":
            return [self.pseudo_row()]
        rows = [{**c.to_json(), "runbook_step": self.number} for c in self.changes]
        if not rows:
            row = self.pseudo_row()
            row["change"] = f"{self.describe()}: nothing to change for this target"
            rows.append(row)
        return rows


@dataclass
class PlannedRunbook:
    """A runbook with every step planned against one target."""

    runbook: Runbook
    service: str
    instance: str | None
    parts: list[PlannedPart]

    @property
    def target(self) -> str:
        """`service/instance` or `service`: the lock and the audit target."""
        return f"{self.service}/{self.instance}" if self.instance else self.service

    @property
    def blast_radius(self) -> dict[str, Any]:
        """The first action's blast radius: what is left serving."""
        return next((p.blast_radius for p in self.parts if p.blast_radius), {})

    def plan_rows(self) -> list[dict[str, Any]]:
        """Every part's rows, in order."""
        return [row for part in self.parts for row in part.plan_rows()]

    def to_json(self) -> dict[str, Any]:
        """The dry run's answer: the plan, nothing changed."""
        return {
            "id": None,
            "status": "planned",
            "action": "runbook",
            "runbook": self.runbook.name,
            "target": self.target,
            "plan": self.plan_rows(),
            "steps": [],
            "blast_radius": self.blast_radius,
            "runbook_steps": [
                {"number": p.number, "kind": p.step.kind, "does": p.describe(), "now": p.now}
                for p in self.parts
            ],
        }


def _params_text(params: Mapping[str, Any]) -> str:
    if not params:
        return ""
    return " (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"


def parse_target(text: Any, runbook: Runbook) -> tuple[str, str | None]:
    """Split SERVICE[/INSTANCE]; raise ActionRefused(422) when the runbook needs the other."""
    if not isinstance(text, str) or not text.strip():
        raise ActionRefused(422, "invalid", "target must be SERVICE or SERVICE/INSTANCE")
    service, slash, instance = text.strip().partition("/")
    if not service or len(service) > 255 or (slash and not 0 < len(instance) <= 255):
        raise ActionRefused(422, "invalid", f"target must be SERVICE[/INSTANCE], not {text!r}")
    if runbook.target == "instance" and not slash:
        raise ActionRefused(
            422, "invalid", f"runbook {runbook.name} acts on an instance: target SERVICE/INSTANCE"
        )
    if runbook.target == "service" and slash:
        raise ActionRefused(
            422, "invalid", f"runbook {runbook.name} acts on a service: target SERVICE"
        )
    return service, instance if slash else None


def find_runbook(qd: Quarterdeck, name: str) -> Runbook:
    """The configured runbook of this name; raise ActionRefused(404)."""
    runbook = qd.config.runbook_book.get(name)
    if runbook is None:
        raise ActionRefused(404, "not_found", f"no runbook {name!r} in [runbooks] file")
    return runbook


def plan_runbook(
    qd: Quarterdeck,
    adapters: Mapping[str, Adapter],
    runbook: Runbook,
    service: str,
    instance: str | None,
    reason: str = "",
    force: bool = False,
    actor: str = "",
) -> PlannedRunbook:
    """Plan every step before anything happens; raise ActionRefused naming the step.

    `actor` is who will run it: the steps that record their author (a degrade switch's and a
    releases key's `by`, a silence's `createdBy`) name them.
    """
    parts: list[PlannedPart] = []
    for number, step in enumerate(runbook.steps, start=1):
        part = PlannedPart(number, step)
        if step.kind == "action":
            params = dict(step.params)
            if force and step.action not in SERVICE_ACTIONS:
                params["force"] = True
            try:
                if step.action in SERVICE_ACTIONS:
                    # As the API does: defaults filled in, a degrade's `until` counted from now.
                    params = parse_service_params(step.action, params, qd.clock())
                request = ActionRequest(step.action, service, instance, params, reason)
                planned = plan_action(qd, adapters, request, actor)
            except ActionRefused as exc:
                if exc.code != "nothing_to_change" or not step.only:
                    raise ActionRefused(
                        exc.status, exc.code, f"step {number} ({part.describe()}): {exc.message}"
                    ) from exc
                planned = None
            if planned is not None:
                part.changes = [c for c in planned.steps if _selected(c, step.only)]
                part.blast_radius = planned.blast_radius
        elif step.kind in ("wait_for", "check"):
            verdict = _evaluate(qd, step, service, instance)
            part.now = verdict.detail
            # Nothing before it changes anything: a check that fails now would fail the run.
            if step.kind == "check" and not verdict.holds and not any(p.changes for p in parts):
                raise ActionRefused(
                    409, "check_failed", f"step {number} ({part.describe()}): {verdict.detail}"
                )
        parts.append(part)
    if not any(p.changes for p in parts):
        raise ActionRefused(
            422, "nothing_to_change", f"runbook {runbook.name} changes nothing on {service}"
        )
    return PlannedRunbook(runbook, service, instance, parts)


def _selected(change: Step, only: tuple[str, ...]) -> bool:
    return not only or change.source in only or change.kind in only


def _evaluate(qd: Quarterdeck, step: RunbookStep, service: str, instance: str | None):
    condition = CONDITIONS[step.condition]
    with qd.store.session() as db:
        return condition.evaluate(db, service, instance, step.params, qd.clock())


def submit_runbook(
    qd: Quarterdeck,
    adapters: Mapping[str, Adapter],
    actor: str,
    name: str,
    target: Any,
    *,
    reason: str = "",
    dry_run: bool = False,
    force: bool = False,
    idempotency_key: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Plan (dry run) or run a runbook; raise ActionRefused.

    With an Idempotency-Key (recorded on the audit row), a run this actor already started with
    it is answered instead of run again (`earlier_run`).
    """
    runbook = find_runbook(qd, name)
    service, instance = parse_target(target, runbook)
    if dry_run:
        return plan_runbook(
            qd, adapters, runbook, service, instance, reason, force, actor
        ).to_json()
    if idempotency_key is not None:
        target = f"{service}/{instance}" if instance else service
        earlier = earlier_run(qd, actor, idempotency_key, "runbook", target, runbook.name)
        if earlier is not None:
            return earlier
    planned = plan_runbook(qd, adapters, runbook, service, instance, reason, force, actor)
    return execute_runbook(qd, adapters, actor, planned, reason, idempotency_key, evidence, sleep)


def execute_runbook(
    qd: Quarterdeck,
    adapters: Mapping[str, Adapter],
    actor: str,
    planned: PlannedRunbook,
    reason: str,
    key: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run a planned runbook step by step, stopping at the first failure; one audit entry."""
    entry_id = uuid.uuid4().hex
    waits = sum(p.step.seconds + p.step.timeout_s for p in planned.parts)
    if not acquire_target_lock(
        qd.store, planned.target, entry_id, HOLDER, qd.clock(), LOCK_TTL_S + waits
    ):
        raise ActionRefused(
            409, "target_busy", f"another action on {planned.target} is running: try again after it"
        )
    params: dict[str, Any] = {"runbook": planned.runbook.name}
    if evidence:
        params["evidence"] = dict(evidence)
    try:
        with qd.store.session(write=True) as db:
            add_entry(
                db,
                id=entry_id,
                at=qd.clock(),
                actor=actor,
                action="runbook",
                target=planned.target,
                reason=reason or f"runbook {planned.runbook.name}",
                params=params,
                plan=planned.plan_rows(),
                steps=[],
                blast_radius=planned.blast_radius,
                status="running",
                undo_of=None,
                idempotency_key=key,
            )
        rows = _run_parts(qd, adapters, planned, sleep)
        with qd.store.session(write=True) as db:
            finish_entry(db, entry_id, rows, _status(rows), qd.clock())
            result = entry_json(get_entry(db, entry_id), undone=False)
    finally:
        release_target_lock(qd.store, planned.target, entry_id)
    result["runbook"] = planned.runbook.name
    return result


def _run_parts(qd, adapters, planned: PlannedRunbook, sleep) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    failed = False
    for part in planned.parts:
        if failed:
            rows.extend(_skipped(part))
            continue
        if part.step.kind == "action":
            if not part.changes:
                rows.append({**part.plan_rows()[0], "ok": True, "detail": "nothing to change",
                             "changed": False, "after": None})  # fmt: skip
                continue
            outcome = execute_steps(part.changes, adapters)
            rows.extend({**r.to_json(), "runbook_step": part.number} for r in outcome.results)
            failed = not all(r.ok for r in outcome.results)
            continue
        ok, detail = _run_wait(qd, part, planned, sleep)
        rows.append({**part.pseudo_row(), "ok": ok, "detail": detail, "changed": False,
                     "after": None})  # fmt: skip
        failed = not ok
    return rows


def _run_wait(qd, part: PlannedPart, planned: PlannedRunbook, sleep) -> tuple[bool, str]:
    step = part.step
    if step.kind == "wait":
        sleep(step.seconds)
        return True, f"waited {step.seconds:g} s"
    verdict = _evaluate(qd, step, planned.service, planned.instance)
    if step.kind == "check":
        return verdict.holds, ("holds: " if verdict.holds else "does not hold: ") + verdict.detail
    deadline = time.monotonic() + step.timeout_s
    while not verdict.holds:
        if time.monotonic() >= deadline:
            return False, f"timed out after {step.timeout_s:g} s: {verdict.detail}"
        sleep(min(POLL_S, max(deadline - time.monotonic(), 0)))
        verdict = _evaluate(qd, step, planned.service, planned.instance)
    return True, f"holds: {verdict.detail}"


def _skipped(part: PlannedPart) -> list[dict[str, Any]]:
    note = "not attempted: an earlier step failed"
    if part.step.kind == "action" and part.changes:
        return [
            {**StepResult(c, None, note).to_json(), "runbook_step": part.number}
            for c in part.changes
        ]
    return [{**part.plan_rows()[0], "ok": None, "detail": note, "changed": False, "after": None}]


def _status(rows: list[dict[str, Any]]) -> str:
    """done: every row ok; partial: something changed before one failed; failed: nothing did."""
    if all(r["ok"] for r in rows):
        return "done"
    return "partial" if any(r["ok"] and r.get("changed") for r in rows) else "failed"
