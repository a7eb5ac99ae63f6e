"""Plans and their execution: each step changes one thing on one source, then reads it back.

The framework knows adapters only by this shape (`Adapter`); which source a step talks to is
the adapter's business (STYLE: actions mirror collectors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class StepFailed(Exception):  # noqa: N818 (a step's outcome, not a bug)
    """A source refused or could not take a change; the reason says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ActionRefused(Exception):  # noqa: N818
    """An action refused before any step ran: the API answers `status` with `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Adapter(Protocol):
    """What the framework needs of a source: read a target's values, and change them."""

    name: str
    kind: str

    def read(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """Return the target's current values of the fields this adapter changes."""

    def apply(
        self,
        target: Mapping[str, Any],
        change: Mapping[str, Any],
        before: Mapping[str, Any] | None = None,
    ) -> str:
        """Make the change on the source; return what it answered; raise StepFailed.

        `before` is what `read` answered just before: a KV write takes its CAS index from it.
        """

    def describe(self, target: Mapping[str, Any], change: Mapping[str, Any]) -> str:
        """Say the exact change in the source's own terms (the command, the file edit)."""


@dataclass
class Step:
    """One change on one source: the wanted values, and what the source held when planned."""

    source: str
    kind: str
    target: dict[str, Any]
    change: dict[str, Any]
    description: str
    before: dict[str, Any] | None = None
    read_error: str | None = None
    # Values the source must still hold for the step to run (an undo expects what the
    # action left; an automatic restore expects the value it found expired).
    expect: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Render as a `plan[]` entry (DESIGN §5 `source`, `change`, with more)."""
        body = {
            "source": self.source,
            "kind": self.kind,
            "target": self.target,
            "change": self.description,
            "set": self.change,
            "before": self.before,
            "read_error": self.read_error,
        }
        if self.expect is not None:
            body["expect"] = self.expect
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Step:
        """Rebuild a step from its `plan[]` entry."""
        return cls(
            source=body["source"],
            kind=body["kind"],
            target=dict(body["target"]),
            change=dict(body["set"]),
            description=body["change"],
            before=body.get("before"),
            expect=body.get("expect"),
        )


@dataclass
class StepResult:
    """What running a step did: ok True/False, or None when it was never attempted."""

    step: Step
    ok: bool | None
    detail: str
    changed: bool = False
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Render as a `steps[]` entry (DESIGN §5 `source`, `change`, `ok`, `detail`, with more)."""
        return {
            **self.step.to_json(),
            "ok": self.ok,
            "detail": self.detail,
            "changed": self.changed,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class Outcome:
    """Every step's result and the action's status: done, failed or partial."""

    results: list[StepResult] = field(default_factory=list)

    @property
    def status(self) -> str:
        """done: every step ok; partial: some ok before one failed; failed: none ok."""
        if all(r.ok for r in self.results):
            return "done"
        return "partial" if any(r.ok for r in self.results) else "failed"


def read_before(steps: Sequence[Step], adapters: Mapping[str, Adapter]) -> None:
    """Fill each step's `before` from its source now; an unreadable one keeps the reason."""
    for step in steps:
        try:
            step.before = adapters[step.source].read(step.target)
        except StepFailed as exc:
            step.before, step.read_error = None, exc.reason


def _holds(values: Mapping[str, Any] | None, change: Mapping[str, Any]) -> bool:
    """Tell whether the source already holds the change (keys the source reads back)."""
    if values is None:
        return False
    return all(values[k] == v for k, v in change.items() if k in values)


def execute_steps(steps: Sequence[Step], adapters: Mapping[str, Adapter]) -> Outcome:
    """Run the steps in order, each verified by reading it back; stop at the first failure."""
    outcome = Outcome()
    failed = False
    for step in steps:
        if failed:
            outcome.results.append(StepResult(step, None, "not attempted: an earlier step failed"))
            continue
        result = _execute_one(step, adapters[step.source])
        outcome.results.append(result)
        failed = not result.ok
    return outcome


def _execute_one(step: Step, adapter: Adapter) -> StepResult:
    try:
        before = adapter.read(step.target)
    except StepFailed as exc:
        return StepResult(step, False, f"could not read the current value: {exc.reason}")
    if _holds(before, step.change):
        return StepResult(step, True, "already so: nothing changed", False, before, before)
    if step.expect is not None and not _holds(before, step.expect):
        return StepResult(
            step,
            False,
            f"the source changed since: it reads {before}, not {step.expect}; nothing changed",
            False,
            before,
            before,
        )
    try:
        answer = adapter.apply(step.target, step.change, before)
    except StepFailed as exc:
        return StepResult(step, False, exc.reason, False, before, _read_quietly(adapter, step))
    try:
        after = adapter.read(step.target)
    except StepFailed as exc:
        return StepResult(step, False, f"applied, but reading back failed: {exc.reason}",
                          True, before, None)  # fmt: skip
    if not _holds(after, step.change):
        return StepResult(
            step, False, f"applied, but the source reads back {after}", True, before, after
        )
    return StepResult(step, True, answer or "applied and read back", True, before, after)


def _read_quietly(adapter: Adapter, step: Step) -> dict[str, Any] | None:
    try:
        return adapter.read(step.target)
    except StepFailed:
        return None


def undo_steps(results: Sequence[Mapping[str, Any]], adapters: Mapping[str, Adapter]) -> list[Step]:
    """Return the inverse of exactly the steps that changed something, last first.

    A step applied but not verified by its read-back changed the source too: it is undone.
    """
    steps = []
    for body in reversed(results):
        # A wait (app/actions/waiting.py) changed nothing a source holds: there is no inverse.
        if not body.get("changed") or body.get("before") is None or body.get("kind") == "wait":
            continue
        done = Step.from_json(body)
        back = {k: body["before"][k] for k in done.change if k in body["before"]}
        back.update({k: v for k, v in done.change.items() if k not in body["before"]})
        adapter = adapters.get(done.source)
        if adapter is None:
            raise ActionRefused(
                409, "source_gone", f"source {done.source!r} is no longer configured"
            )
        description = adapter.describe(done.target, back)
        after = body.get("after")
        # Undo only what this action left: a value someone changed since is theirs.
        expect = {k: after[k] for k in done.change if k in after} if after else None
        steps.append(
            Step(done.source, done.kind, done.target, back, description, after, expect=expect)
        )
    return steps
