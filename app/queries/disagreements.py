"""Where the sources disagree across the fleet, for the Overview: bounded by the trouble, not by
the fleet's size.

Only services that can disagree are looked at: those with a failing or maintenance instance
(a balancer may still send them traffic), those with a balancer member out of rotation or
down, those whose error ratio is above the threshold, those with a firing alert and those
with a failing business probe. Each is
then judged exactly as its own page judges it (`service_view_json`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import ProbeConfig
from app.models import BalancerMember
from app.queries.metrics import alerts_by_service, red_by_service
from app.queries.probes import failing_probe_services
from app.queries.service_view import service_view_json
from app.queries.services import get_service
from app.queries.sources import SourceView
from app.queries.verdict import VerdictRules
from app.store.balancers import load_catalog_match

members_t = BalancerMember.__table__
# Member states a balancer can disagree with a passing check about.
_TROUBLED_STATES = ("down", "drain", "maint", "nolb")


def _troubled_member_services(db: Session) -> list[str]:
    members = db.execute(
        select(members_t.c.backend, members_t.c.server, members_t.c.address, members_t.c.port)
        .where(members_t.c.state.in_(_TROUBLED_STATES))
        .order_by(members_t.c.backend, members_t.c.server)
    ).all()
    if not members:
        return []
    catalog = load_catalog_match(db)
    names = []
    for row in members:
        match = catalog.find(row.address, row.port, row.server)
        names.append(match[0] if match is not None else row.backend)
    return names


def fleet_disagreements(
    db: Session,
    failing: Iterable[str],
    sources: dict[str, SourceView],
    now: datetime,
    rules: VerdictRules,
    limit: int = 20,
    probes: Sequence[ProbeConfig] = (),
) -> tuple[list[dict], int]:
    """Return the disagreements of at most `limit` services, worst first, and how many services
    were candidates. `failing` names the services with a critical or maintenance instance."""
    alerts = alerts_by_service(db)
    red = red_by_service(db)
    candidates = dict.fromkeys(
        [
            *(name for name, found in alerts.items() if name and found),
            *(n for n, r in red.items() if (r.error_ratio or 0) > rules.error_ratio),
            *failing,
            *_troubled_member_services(db),
            *failing_probe_services(db, [p.service for p in probes], now),
        ]
    )
    found: list[dict] = []
    judged = 0
    for name in candidates:
        if judged >= limit:
            break
        detail = get_service(db, name, now)
        if detail is None:
            continue
        judged += 1
        body = service_view_json(db, detail, sources, now, rules, probes)
        for said in body["verdict"]["disagreements"]:
            found.append({**said, "service": name, "verdict": body["verdict"]["health"]})
    rank = {"critical": 0, "warning": 1, "maintenance": 2, "unknown": 3, "passing": 4}
    found.sort(key=lambda d: (d["stale"], rank.get(d["verdict"], 3), d["service"]))
    return found, len(candidates)
