"""`quarterdeck runbook list` and `runbook run NAME --target ...`: the API's own code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from app.actions.command import MARKS
from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused
from app.context import Quarterdeck
from app.runbooks.running import execute_runbook, find_runbook, parse_target, plan_runbook


def list_runbooks_command(qd: Quarterdeck, out: TextIO | None = None) -> int:
    """Print each runbook with its steps."""
    out = out or sys.stdout
    if not qd.config.runbook_book:
        print("no runbooks: set [runbooks] file", file=out)
        return 0
    for runbook in qd.config.runbook_book.values():
        print(f"{runbook.name} (target: {runbook.target}) {runbook.description}".rstrip(), file=out)
        for number, step in enumerate(runbook.steps, start=1):
            print(f"  {number}. {_step_text(step)}", file=out)
    return 0


def _step_text(step) -> str:
    if step.kind == "action":
        return step.action + (f" on {', '.join(step.only)}" if step.only else "")
    if step.kind == "wait":
        return f"wait {step.seconds:g} s"
    return f"{step.kind.replace('_', ' ')} {step.condition}"


def run_runbook_command(
    qd: Quarterdeck,
    actor: str,
    name: str,
    target: str,
    *,
    reason: str = "",
    dry_run: bool = False,
    yes: bool = False,
    force: bool = False,
    confirm: Callable[[str], bool] | None = None,
    out: TextIO | None = None,
) -> int:
    """Plan, confirm and run a runbook; return the exit code (0 done, 1 not, 2 refused)."""
    out = out or sys.stdout
    adapters = configured_adapters(qd.config)
    try:
        runbook = find_runbook(qd, name)
        service, instance = parse_target(target, runbook)
        planned = plan_runbook(
            qd, adapters, runbook, service, instance, reason.strip(), force, actor
        )
        print(f"plan: runbook {name} on {planned.target}", file=out)
        for part in planned.parts:
            print(f"  {part.number}. {part.describe()}", file=out)
            for change in part.changes:
                now = change.before if change.read_error is None else change.read_error
                print(f"     {change.description}\n       now: {now}", file=out)
            if part.now:
                print(f"     now: {part.now}", file=out)
        serving = planned.blast_radius.get("serving_after")
        if serving is not None:
            print(f"  left serving: {', '.join(serving) or 'none'}", file=out)
        if dry_run:
            return 0
        if not yes and not (confirm or _ask)(f"run {name} on {planned.target}? [y/N] "):
            print("not confirmed: nothing was changed", file=out)
            return 1
        result = execute_runbook(qd, adapters, actor, planned, reason.strip())
    except ActionRefused as exc:
        print(f"quarterdeck: refused ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    finally:
        close_adapters(adapters)
    return _print_result(result, out)


def _print_result(result: dict[str, Any], out: TextIO) -> int:
    print(f"runbook {result['runbook']} {result['target']}: {result['status']} "
          f"(audit {result['id']})", file=out)  # fmt: skip
    for step in result["steps"]:
        print(f"  {MARKS[step['ok']]:<7} {step['runbook_step']}. {step['change']}\n"
              f"          {step['detail']}", file=out)  # fmt: skip
    if result.get("undo_url"):
        print(f"undo with: quarterdeck action undo {result['id']}", file=out)
    return 0 if result["status"] == "done" else 1


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        print("quarterdeck: not a terminal: pass --yes to run without asking", file=sys.stderr)
        return False
    return input(question).strip().lower() in ("y", "yes")
