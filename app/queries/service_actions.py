"""What the service page's "Act on this service" card offers, from what the store knows.

The degrade switch is as the audit last read it back (every degrade, restore, undo and expiry
is audited with its read-back); the versions and the balancers' weights are as last collected.
The plan of each action reads the sources again before anything changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.actions.services import DEGRADE_PREFIX
from app.queries.sources import iso
from app.store.audit import latest_of

SWITCH_ACTIONS = ("degrade", "restore", "undo degrade", "undo restore")


def degrade_switch(db: Session, service: str, now: datetime) -> dict[str, Any] | None:
    """Return the degrade switch as the last audited write read it back, or None if none is set.

    The answer carries `entry` (the audit id that wrote it) and `expired` (its `until` passed).
    """
    key = DEGRADE_PREFIX + service
    for entry in latest_of(db, service, SWITCH_ACTIONS):
        for step in entry.steps:
            if (step.get("target") or {}).get("key") != key or step.get("ok") is not True:
                continue
            value = (step.get("after") or {}).get("value")
            if not isinstance(value, dict):
                return None
            until = value.get("until") if isinstance(value.get("until"), str) else None
            return {
                **value,
                "entry": entry.id,
                "at": iso(entry.at),
                "expired": until is not None and until <= iso(now),
            }
    return None


def canary_choice(instances: list[dict], releases: list[dict]) -> dict[str, Any] | None:
    """The two versions a canary moves traffic between, and the share `to` has now.

    `from` is the releases key's previous version (else the older release), `to` its active
    one (else the newer); None when the instances run fewer than two versions. `share` is the
    percentage of the balancers' weight on `to`'s servers, None without balancer members.
    """
    running = sorted({i["version"] for i in instances if i.get("version")})
    if len(running) < 2:
        return None
    role = {r["version"]: r["kv_role"] for r in releases if r.get("kv_role")}
    newest_first = [r["version"] for r in releases if r["version"] in running]
    newest_first += [v for v in reversed(running) if v not in newest_first]
    to = next((v for v, r in role.items() if r == "active" and v in running), newest_first[0])
    old = [v for v in newest_first if v != to]
    frm = next((v for v, r in role.items() if r == "previous" and v in old), old[0])
    weights = {frm: 0, to: 0}
    members = 0
    for instance in instances:
        if instance.get("version") not in weights:
            continue
        for row in instance.get("lb") or []:
            members += 1
            taking = row.get("state") not in ("drain", "maint", "down")
            weights[instance["version"]] += (row.get("weight") or 0) if taking else 0
    total = weights[frm] + weights[to]
    share = round(100 * weights[to] / total) if members and total else None
    return {"from": frm, "to": to, "versions": running, "share": share}
