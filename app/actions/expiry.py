"""Expire degrade switches whose `until` has passed: an automatic, audited restore.

A service's own `DegradeSwitch` already ignores a switch past its `until`; this job deletes the
key so that Consul, the UI and the audit say the same. The restore expects the exact value it
found expired, so a degrade written in the meantime is never deleted by it (DESIGN §6, §7).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from app.actions.instances import PlannedAction
from app.actions.running import execute_planned
from app.actions.services import DEGRADE_PREFIX
from app.actions.sources import CONSUL_SOURCE, close_adapters, configured_adapters
from app.actions.steps import ActionRefused, Step, StepFailed, read_before
from app.context import Quarterdeck

log = logging.getLogger(__name__)

JOB_ID = "actions:degrade-expiry"
INTERVAL_S = 30.0
EXPIRY_ACTOR = "quarterdeck:expiry"


def expired_until(value: Any, now: datetime) -> str | None:
    """Return the switch's `until` when it has passed, else None (no until, or not a switch)."""
    if not isinstance(value, dict) or not isinstance(value.get("until"), str):
        return None
    try:
        until_at = datetime.fromisoformat(value["until"].replace("Z", "+00:00"))
    except ValueError:
        return None
    if until_at.tzinfo is None or until_at > now:
        return None
    return value["until"]


def expire_degrade_switches(qd: Quarterdeck) -> list[dict[str, Any]]:
    """Restore every service whose degrade switch has expired; return the audited results."""
    adapters = configured_adapters(qd.config)
    results = []
    try:
        consul = adapters.get(CONSUL_SOURCE)
        if consul is None:
            return []
        try:
            keys = consul.list_kv(DEGRADE_PREFIX)
        except StepFailed as exc:
            log.warning("degrade expiry: %s", exc.reason)
            return []
        for key, found in keys:
            until = expired_until(found["value"], qd.clock())
            service = key[len(DEGRADE_PREFIX) :]
            if until is None or not service or "/" in service:
                continue
            target, change = {"key": key}, {"value": None}
            step = Step(
                consul.name, consul.kind, target, change, consul.describe(target, change),
                expect={"value": found["value"]},
            )  # fmt: skip
            read_before([step], adapters)
            planned = PlannedAction("restore", service, [step], {"expired_until": until})
            reason = f"automatic restore: the switch's until ({until}) has passed"
            try:
                result = execute_planned(qd, adapters, EXPIRY_ACTOR, planned, reason, {})
            except ActionRefused as exc:  # another action on the service runs: next pass
                log.info("degrade expiry of %s postponed: %s", service, exc.message)
                continue
            log.info("degrade expiry restored %s: %s", service, result["status"])
            results.append(result)
    finally:
        close_adapters(adapters)
    return results
