"""`quarterdeck action drain|ready|degrade|restore|canary|rollback`, `undo ID`, `approve ID`.

The same functions as the API (`submit_action`, `undo_action`, `approve_action`), so the same
plan, approval and audit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from app.actions.running import (
    approve_action,
    needs_approval,
    parse_action_request,
    plan_action,
    submit_action,
    undo_action,
)
from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused
from app.context import Quarterdeck
from app.store.audit import get_entry, lock_holder_entry

MARKS = {True: "ok ", False: "FAILED", None: "skipped"}
PROGRESS_EVERY_S = 1.0


def run_instance_command(
    qd: Quarterdeck,
    actor: str,
    action: str,
    target: str,
    *,
    reason: str = "",
    dry_run: bool = False,
    yes: bool = False,
    force: bool = False,
    wait: bool = False,
    wait_timeout_s: int | None = None,
    confirm: Callable[[str], bool] | None = None,
    out: TextIO | None = None,
) -> int:
    """Plan, confirm and run a drain or ready; return the exit code (0 done, 1 not, 2 refused)."""
    service, slash, instance = target.partition("/")
    if not slash or not service or not instance:
        print(f"quarterdeck: the target must be SERVICE/INSTANCE, not {target!r}", file=sys.stderr)
        return 2
    params: dict[str, Any] = {"force": True} if force else {}
    if wait:
        params["wait_for_zero"] = True
        if wait_timeout_s is not None:
            params["wait_timeout_s"] = wait_timeout_s
    body = {"action": action, "target": {"service": service, "instance": instance},
            "params": params, "reason": reason}  # fmt: skip
    return run_action_command(qd, actor, body, dry_run=dry_run, yes=yes, confirm=confirm, out=out)


def run_action_command(
    qd: Quarterdeck,
    actor: str,
    body: dict[str, Any],
    *,
    dry_run: bool = False,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    out: TextIO | None = None,
) -> int:
    """Plan, confirm and run any action from its API body; return the exit code.

    0 done (or planned, or awaiting approval), 1 not done or not confirmed, 2 refused.
    """
    out = out or sys.stdout
    adapters = configured_adapters(qd.config)
    try:
        request = parse_action_request({**body, "dry_run": dry_run}, qd.clock())
        planned = plan_action(qd, adapters, request, actor)
        print(f"plan: {request.action} {planned.target}", file=out)
        for number, step in enumerate(planned.steps, start=1):
            now = step.before if step.read_error is None else f"unreadable: {step.read_error}"
            print(f"  {number}. {step.description}\n     now: {now}", file=out)
        _print_blast(planned.blast_radius, out)
        _print_callers(planned.blast_radius, out)
        if needs_approval(qd, request) and not request.break_glass:
            print("  needs a second operator's approval before it runs", file=out)
        if dry_run:
            return 0
        question = f"{request.action} {planned.target}? [y/N] "
        if not yes and not (confirm or _ask)(question):
            print("not confirmed: nothing was changed", file=out)
            return 1
        with _printing_progress(qd, planned.target, out):
            result = submit_action(qd, adapters, actor, dataclasses.replace(request, dry_run=False))
    except ActionRefused as exc:
        print(f"quarterdeck: refused ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    finally:
        close_adapters(adapters)
    return _print_result(result, out)


def _print_blast(blast: dict[str, Any], out: TextIO) -> None:
    if "serving_after" in blast:
        print(f"  left serving: {', '.join(blast['serving_after']) or 'none'}", file=out)
    if blast.get("push_connections"):
        print(f"  push connections on it: {blast['push_connections']:g}", file=out)
    if blast.get("versions"):
        versions = "; ".join(f"{v}: {', '.join(ids)}" for v, ids in blast["versions"].items())
        print(f"  instances by version: {versions}", file=out)
    if blast.get("release"):
        print(f"  release: {blast['release']['from']} back to {blast['release']['to']}", file=out)


def run_approve_command(
    qd: Quarterdeck, actor: str, entry_id: str, *, out: TextIO | None = None
) -> int:
    """Approve (and so run) an action another operator asked for; return the exit code."""
    return _run_on_entry(qd, approve_action, actor, entry_id, out)


def run_undo_command(
    qd: Quarterdeck, actor: str, entry_id: str, *, out: TextIO | None = None
) -> int:
    """Undo an audited action; return the exit code."""
    return _run_on_entry(qd, undo_action, actor, entry_id, out)


def _run_on_entry(qd: Quarterdeck, operation, actor: str, entry_id: str, out) -> int:
    """Run `operation(qd, adapters, actor, entry_id)` on an audited entry; 2 when refused."""
    out = out or sys.stdout
    adapters = configured_adapters(qd.config)
    try:
        result = operation(qd, adapters, actor, entry_id)
    except ActionRefused as exc:
        print(f"quarterdeck: refused ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    finally:
        close_adapters(adapters)
    return _print_result(result, out)


def _print_result(result: dict[str, Any], out: TextIO) -> int:
    print(
        f"{result['action']} {result['target']}: {result['status']} (audit {result['id']})",
        file=out,
    )
    for step in result["steps"]:
        print(f"  {MARKS[step['ok']]:<7} {step['change']}\n          {step['detail']}", file=out)
    if result.get("break_glass"):
        print("BROKE GLASS: ran without the approval it needed (audited)", file=out)
    if result["status"] == "awaiting_approval":
        approve = f"quarterdeck action approve {result['id']}"
        print(f"another operator approves with: {approve}", file=out)
        return 0
    if result.get("undo_url"):
        print(f"undo with: quarterdeck action undo {result['id']}", file=out)
    return 0 if result["status"] == "done" else 1


@contextlib.contextmanager
def _printing_progress(qd: Quarterdeck, target: str, out: TextIO) -> Iterator[None]:
    """Print a waiting drain's progress (from its audit row) while the action runs."""
    stop = threading.Event()

    def watch() -> None:
        said = None
        while not stop.wait(PROGRESS_EVERY_S):
            with qd.store.session() as db:
                entry_id = lock_holder_entry(db, target)
                entry = get_entry(db, entry_id) if entry_id else None
                steps = list(entry.steps) if entry is not None else []
            detail = next((s["detail"] for s in steps if s.get("progress")), None)
            if detail and detail != said:
                print(f"  {detail}", file=out, flush=True)
                said = detail

    watcher = threading.Thread(target=watch, name="action-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def _print_callers(blast: dict[str, Any], out: TextIO) -> None:
    callers = blast.get("callers") or []
    if callers:
        rates = [
            f"{c['service']} ({c['rate_rps']:.3g} req/s)" if c["rate_rps"] is not None
            else f"{c['service']} (rate not measured)"
            for c in callers
        ]  # fmt: skip
        print(f"  callers: {', '.join(rates)}", file=out)
    elif blast.get("callers_note"):
        print(f"  callers: none known ({blast['callers_note']})", file=out)


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        print("quarterdeck: not a terminal: pass --yes to run without asking", file=sys.stderr)
        return False
    return input(question).strip().lower() in ("y", "yes")
