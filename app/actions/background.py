"""Run an action on a thread of its own and answer as soon as its audit row exists.

The UI's confirmation does not wait for a drain's connections to fall: it shows the result
page at once, which follows the run live. Refusals (4xx before any step) still come back to
the form, since they happen before the row is written.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from app.actions.running import ActionRequest, submit_action, undo_action
from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused
from app.context import Quarterdeck
from app.store.audit import entry_by_request_key, undo_entry_of

log = logging.getLogger(__name__)
# Planning reads every source once; a row not written by then is not coming.
ROW_WAIT_S = 30.0
POLL_S = 0.05


def start_action(qd: Quarterdeck, actor: str, req: ActionRequest, key: str) -> str:
    """Start the action under its Idempotency-Key; return its audit id; raise ActionRefused."""

    def run(adapters):
        return submit_action(qd, adapters, actor, req, key)

    def find(db):
        entry = entry_by_request_key(db, actor, key)
        return entry.id if entry is not None else None

    return _start(qd, run, find, f"action {req.action} {req.service}")


def start_undo(qd: Quarterdeck, actor: str, entry_id: str, reason: str) -> str:
    """Start the undo of an audited action; return the undo's audit id; raise ActionRefused."""

    started_at = qd.clock()

    def run(adapters):
        return undo_action(qd, adapters, actor, entry_id, reason)

    def find(db):
        entry = undo_entry_of(db, entry_id, actor, started_at)
        return entry.id if entry is not None else None

    return _start(qd, run, find, f"undo {entry_id}")


def _start(qd: Quarterdeck, run, find, name: str) -> str:
    box: dict[str, Any] = {}
    finished = threading.Event()

    def work() -> None:
        adapters = configured_adapters(qd.config)
        try:
            box["result"] = run(adapters)
            qd.feed.publish({"actions", f"action:{box['result']['id']}"})
        except ActionRefused as exc:
            box["refused"] = exc
        except Exception as exc:  # the row, if written, says "running" until recovered
            log.exception("%s failed", name)
            box["error"] = exc
        finally:
            close_adapters(adapters)
            finished.set()

    threading.Thread(target=work, name=name[:60], daemon=True).start()
    deadline = time.monotonic() + ROW_WAIT_S
    while True:
        done = finished.wait(POLL_S)
        if done:
            if "refused" in box:
                raise box["refused"]
            if "error" in box:
                raise ActionRefused(500, "internal", f"{name} failed: {box['error']}")
            return box["result"]["id"]
        with qd.store.session() as db:
            found = find(db)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise ActionRefused(504, "not_started", f"{name} did not start within {ROW_WAIT_S:g} s")
