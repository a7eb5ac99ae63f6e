"""What the rules would have done over a past window, replayed from stored history.

Each condition's stretches come from the store (health and probe transitions, span RED
minutes); a stretch at least `for_s` long fires once, `for_s` after it began. The rate limit
is replayed over the firings themselves; the freshness of sources and the other instances'
health at that moment are not stored, so those two limits are named as not replayed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.context import Quarterdeck
from app.queries.sources import iso
from app.rules.conditions import RULE_CONDITIONS

NOT_REPLAYED = ("stale_source", "last_healthy_instance")


def replay_rules(qd: Quarterdeck, hours: int = 24, now: datetime | None = None) -> dict[str, Any]:
    """Return each firing the rules would have had in the last `hours`, oldest first."""
    end = now or qd.clock()
    start = end - timedelta(hours=hours)
    firings: list[dict[str, Any]] = []
    notes: list[str] = []
    with qd.store.session() as db:
        for rule in qd.config.rules:
            condition = RULE_CONDITIONS[rule.when]
            stretches = None
            if condition.history is not None:
                stretches = condition.history(db, start, end, rule.params, qd.config)
            if stretches is None:
                notes.append(f"{rule.name}: {condition.history_note or 'no stored history'}")
                continue
            hold = timedelta(seconds=rule.for_s)
            for stretch in stretches:
                if stretch.end_at - stretch.start_at >= hold:
                    firings.append({"rule": rule, "target": stretch.target,
                                    "at": stretch.start_at + hold, "from": stretch.start_at,
                                    "to": stretch.end_at})  # fmt: skip
    firings.sort(key=lambda f: (f["at"], f["rule"].name, f["target"]))
    ran: dict[str, list[datetime]] = {}
    out = []
    for firing in firings:
        rule, service = firing["rule"], firing["target"].partition("/")[0]
        would = {"propose": "propose", "auto": "run", "dry-run": "dry-run"}[rule.mode]
        limit = None
        if rule.mode == "auto":
            recent = [t for t in ran.get(service, []) if t > firing["at"] - timedelta(hours=1)]
            if len(recent) >= rule.max_per_hour:
                would, limit = "refuse", "rate_limit"
            else:
                ran.setdefault(service, []).append(firing["at"])
        out.append({
            "rule": rule.name, "mode": rule.mode, "runbook": rule.runbook,
            "target": firing["target"], "at": iso(firing["at"]),
            "held_from": iso(firing["from"]), "held_to": iso(firing["to"]),
            "would": would, "limit": limit,
        })  # fmt: skip
    return {
        "since": iso(start),
        "until": iso(end),
        "decisions": out,
        "not_replayed": list(NOT_REPLAYED),
        "notes": notes,
    }
