"""Probes as the API and the service page show them: state, last result, availability, history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.config import ProbeConfig
from app.models import ProbeResultRow, ProbeState, ProbeTransition
from app.queries.sources import iso

DEFAULT_WINDOW = timedelta(hours=24)
# Results drawn on the service page's timeline, newest last.
TIMELINE_RESULTS = 60
TRANSITIONS_LIMIT = 100


def availability_by_probe(
    db: Session, names: Sequence[str], since: datetime, until: datetime
) -> dict[str, float]:
    """The share (0-1) of each probe's results in [since, until] that passed; absent: none ran."""
    if not names:
        return {}
    passed = func.sum(case((ProbeResultRow.ok.is_(True), 1), else_=0))
    rows = db.execute(
        select(ProbeResultRow.name, passed, func.count())
        .where(ProbeResultRow.name.in_(names))
        .where(ProbeResultRow.at >= since, ProbeResultRow.at <= until)
        .group_by(ProbeResultRow.name)
    )
    return {name: (ok or 0) / total for name, ok, total in rows if total}


def _transitions(db: Session, names: Sequence[str], since: datetime) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {n: [] for n in names}
    if not names:
        return found
    rows = db.scalars(
        select(ProbeTransition)
        .where(ProbeTransition.name.in_(names), ProbeTransition.at >= since)
        .order_by(ProbeTransition.at.desc(), ProbeTransition.id.desc())
    )
    for row in rows:
        if len(found[row.name]) < TRANSITIONS_LIMIT:
            found[row.name].append(
                {
                    "at": iso(row.at),
                    "from": row.from_state,
                    "to": row.to_state,
                    "detail": row.detail,
                }
            )
    return found


def _last(state: ProbeState | None) -> dict | None:
    if state is None:
        return None
    return {
        "at": iso(state.last_at),
        "ok": state.last_ok,
        "status": state.last_status,
        "latency_ms": state.last_latency_ms,
        "detail": state.last_detail,
    }


def probes_json(
    db: Session,
    probes: Sequence[ProbeConfig],
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    service: str | None = None,
) -> list[dict]:
    """Render DESIGN §5 `probes[]` for the configured probes (of one service, if given).

    A probe that has not run yet is "unknown" with `last` and `availability` null.
    """
    chosen = [p for p in probes if service is None or p.service == service]
    names = [p.name for p in chosen]
    states = (
        {s.name: s for s in db.scalars(select(ProbeState).where(ProbeState.name.in_(names)))}
        if names
        else {}
    )
    since = now - window
    availability = availability_by_probe(db, names, since, now)
    transitions = _transitions(db, names, since)
    body = []
    for probe in chosen:
        state = states.get(probe.name)
        body.append(
            {
                "name": probe.name,
                "service": probe.service,
                "state": state.state if state is not None else "unknown",
                "since": iso(state.since_at) if state is not None else None,
                "stale": state is not None and state.fresh_until_at < now,
                "url": probe.url,
                "method": probe.method,
                "interval_s": probe.interval_s,
                "last": _last(state),
                "availability": availability.get(probe.name),
                "window_h": window.total_seconds() / 3600,
                "transitions": transitions[probe.name],
            }
        )
    return body


def probe_timeline(db: Session, name: str, limit: int = TIMELINE_RESULTS) -> list[dict]:
    """The probe's latest results, oldest first, for the service page's strip."""
    rows = db.scalars(
        select(ProbeResultRow)
        .where(ProbeResultRow.name == name)
        .order_by(ProbeResultRow.at.desc(), ProbeResultRow.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "at": iso(r.at),
            "ok": r.ok,
            "status": r.status,
            "latency_ms": r.latency_ms,
            "detail": r.detail,
        }
        for r in reversed(rows)
    ]


def failing_probe_disagreements(probes_view: Sequence[dict]) -> list[dict]:
    """A disagreement (source "probe:<name>") for each failing probe, saying why it fails."""
    found = []
    for probe in probes_view:
        if probe["state"] != "failing":
            continue
        last = probe["last"] or {}
        found.append(
            {
                "source": f"probe:{probe['name']}",
                "says": f"business probe {probe['name']} is failing: {last.get('detail', '')}",
                "stale": probe["stale"],
            }
        )
    return found


def apply_probe_verdict(body: dict, probes_view: list[dict]) -> dict:
    """Add the service's probes to its JSON; a fresh failing probe makes the verdict critical."""
    body["probes"] = probes_view
    said = failing_probe_disagreements(probes_view)
    verdict = body["verdict"]
    verdict["disagreements"] = verdict["disagreements"] + said
    if any(not d["stale"] for d in said):
        verdict["health"] = "critical"  # the business function itself is failing
    return body


def failing_probe_services(db: Session, services: Sequence[str], now: datetime) -> set[str]:
    """The services among `services` with a fresh failing probe (for the map's colours)."""
    if not services:
        return set()
    found: set[str] = set()
    names = list(services)
    for start in range(0, len(names), 500):
        found.update(
            db.scalars(
                select(ProbeState.service)
                .where(ProbeState.state == "failing", ProbeState.fresh_until_at >= now)
                .where(ProbeState.service.in_(names[start : start + 500]))
            )
        )
    return found
