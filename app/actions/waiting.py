"""Drain with wait-for-zero: a last step that holds the action until the instance is empty.

The wait is a step like the others (planned, read before, "applied", read back), run by an
adapter of its own: its read is the instance's connections now, the way the push view counts
them (HAProxy `scur` of each member, else the push gauge), and its apply waits for 0. While
it waits it writes its progress into the running action's audit row and tells open result
pages (feed topic `action:<id>`), so the connections are seen falling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from sqlalchemy import select

from app.actions.instances import PlannedAction
from app.actions.steps import ActionRefused, Adapter, Step, StepFailed
from app.context import Quarterdeck
from app.models import PushGauge
from app.queries.sources import iso
from app.store.audit import lock_holder_entry, record_progress

WAIT_SOURCE = "connections"
DEFAULT_TIMEOUT_S = 120
# Below the target lock's 300 s, so a waiting drain never outlives its lock.
MAX_TIMEOUT_S = 240
POLL_S = 1.0
MAX_SAMPLES = 300


def check_wait_params(action: str, params: Mapping[str, Any]) -> None:
    """Validate `wait_for_zero` / `wait_timeout_s`; raise ActionRefused(422) naming the field."""
    wait = params.get("wait_for_zero", False)
    if not isinstance(wait, bool):
        raise ActionRefused(422, "invalid", "params.wait_for_zero must be true or false")
    if wait and action != "drain":
        raise ActionRefused(422, "invalid", "params.wait_for_zero applies to drain only")
    if "wait_timeout_s" in params:
        timeout = params["wait_timeout_s"]
        if not wait:
            raise ActionRefused(422, "invalid", "params.wait_timeout_s needs wait_for_zero")
        if (
            not isinstance(timeout, int)
            or isinstance(timeout, bool)
            or not 1 <= timeout <= MAX_TIMEOUT_S
        ):
            raise ActionRefused(
                422,
                "invalid",
                f"params.wait_timeout_s must be whole seconds from 1 to {MAX_TIMEOUT_S}",
            )


class ConnectionsAdapter:
    """Reads one instance's connections; its "change" is waiting until there are none."""

    kind = "wait"
    name = WAIT_SOURCE

    def __init__(
        self,
        qd: Quarterdeck,
        counters: list[tuple[Adapter, dict[str, Any]]],
        lock_target: str,
        timeout_s: float,
        poll_s: float = POLL_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.qd, self.counters, self.lock_target = qd, counters, lock_target
        self.timeout_s, self.poll_s, self.sleep = timeout_s, poll_s, sleep

    def read(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """Return {"connections": n, "counted_by": where}: live HAProxy scur, else the gauge."""
        if self.counters:
            total = sum(adapter.connections(t) for adapter, t in self.counters)  # type: ignore[attr-defined]
            names = ", ".join(sorted({adapter.name for adapter, _ in self.counters}))
            return {"connections": total, "counted_by": names}
        gauge = _gauge(self.qd, target["service"], target["instance"])
        if gauge is None:
            raise StepFailed("no source counts this instance's connections any more")
        return {"connections": gauge, "counted_by": "push gauge"}

    def apply(
        self,
        target: Mapping[str, Any],
        change: Mapping[str, Any],
        before: Mapping[str, Any] | None = None,
    ) -> str:
        """Wait until the instance holds no connection; raise StepFailed at the timeout."""
        started = time.monotonic()
        started_at = self.qd.clock()
        samples: list[list[Any]] = []
        first = None
        while True:
            now = self.read(target)["connections"]
            first = now if first is None else first
            samples = [*samples, [iso(self.qd.clock()), now]][-MAX_SAMPLES:]
            waited = time.monotonic() - started
            self._progress(target, change, first, now, waited, started_at, samples)
            if now == 0:
                return f"0 connections after {waited:.0f} s (from {first:g})"
            if waited >= self.timeout_s:
                raise StepFailed(
                    f"{now:g} connection{'' if now == 1 else 's'} still open after "
                    f"{self.timeout_s:g} s (from {first:g}): the drain stays in place, the wait "
                    "gave up"
                )
            self.sleep(self.poll_s)

    def describe(self, target: Mapping[str, Any], change: Mapping[str, Any]) -> str:
        """Say what is waited for, on which count, for how long at most."""
        counted = (
            ", ".join(f"{a.name} {t['backend']}/{t['server']} scur" for a, t in self.counters)
            or "the push gauge"
        )
        return (
            f"wait until {target['service']}/{target['instance']} holds 0 connections "
            f"({counted}), at most {self.timeout_s:g} s"
        )

    def _progress(self, target, change, first, now, waited, started_at, samples) -> None:
        with self.qd.store.session(write=True) as db:
            entry_id = lock_holder_entry(db, self.lock_target)
            if entry_id is None:
                return
            step = Step(self.name, self.kind, dict(target), dict(change),
                        self.describe(target, change), {"connections": first})  # fmt: skip
            record_progress(
                db,
                entry_id,
                [
                    {
                        **step.to_json(),
                        "ok": None,
                        "detail": f"waiting: {now:g} connection{'' if now == 1 else 's'} after "
                        f"{waited:.0f} s (from {first:g})",
                        "changed": False,
                        "after": {"connections": now},
                        "progress": {
                            "started_at": iso(started_at),
                            "timeout_s": self.timeout_s,
                            "samples": samples,
                        },
                    }
                ],
            )
        self.qd.feed.publish({f"action:{entry_id}", "actions"})


def add_wait_step(
    qd: Quarterdeck,
    adapters: MutableMapping[str, Adapter],
    planned: PlannedAction,
    service: str,
    instance: str,
    params: Mapping[str, Any],
) -> None:
    """Append the wait-for-zero step to a drain's plan when `params.wait_for_zero` asks for it."""
    if not params.get("wait_for_zero"):
        return
    counters = [
        (adapters[s.source], s.target)
        for s in planned.steps
        if s.kind == "haproxy" and hasattr(adapters[s.source], "connections")
    ]
    if not counters and _gauge(qd, service, instance) is None:
        raise ActionRefused(
            422,
            "cannot_wait",
            f"params.wait_for_zero: nothing counts {service}/{instance}'s connections (no "
            "HAProxy in front of it, no push gauge for it), so the wait could never end",
        )
    timeout = params.get("wait_timeout_s", DEFAULT_TIMEOUT_S)
    adapter = ConnectionsAdapter(qd, counters, planned.target, timeout)
    adapters[WAIT_SOURCE] = adapter
    target = {"service": service, "instance": instance}
    change = {"connections": 0}
    planned.steps.append(
        Step(WAIT_SOURCE, adapter.kind, target, change, adapter.describe(target, change))
    )


def _gauge(qd: Quarterdeck, service: str, instance: str) -> float | None:
    with qd.store.session() as db:
        return db.scalar(
            select(PushGauge.connections).where(
                PushGauge.service == service, PushGauge.instance == instance
            )
        )
