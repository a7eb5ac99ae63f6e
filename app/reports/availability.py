"""Availability per service and its incidents, replayed from health and probe transitions."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import HealthTransition, Instance, ProbeResultRow, ProbeTransition, Service
from app.queries.sources import iso
from app.queries.strips import Span, chunks, instance_spans, instance_start, instance_state

# States that say nothing about whether the service served: not counted either way.
UNOBSERVED = ("gone", "unknown", "maintenance")
UP = ("passing", "warning")
OUTPUT_LIMIT = 300

transitions_t = HealthTransition.__table__
instances_t = Instance.__table__
services_t = Service.__table__


@dataclass
class ServiceHistory:
    """A service's states over the period and the transitions that explain them."""

    name: str
    spans: list[Span]
    # Transitions to critical in the period, oldest first: (at, instance, check, output).
    criticals: list[tuple]

    def first_critical_in(self, start_at: datetime, end_at: datetime) -> tuple | None:
        """The first transition to critical at or after start_at and before end_at."""
        index = bisect.bisect_left(self.criticals, (start_at,))
        if index < len(self.criticals) and self.criticals[index][0] < end_at:
            return self.criticals[index]
        return None


def one_line(text: str | None, limit: int = OUTPUT_LIMIT) -> str:
    """Collapse whitespace and cut to `limit` characters, marking the cut."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def read_service_histories(
    db: Session, start_at: datetime, end_at: datetime
) -> list[ServiceHistory]:
    """Replay every service seen during [start_at, end_at] from its instances' transitions."""
    services = db.execute(
        select(services_t.c.id, services_t.c.name, services_t.c.first_seen_at)
        .where(services_t.c.first_seen_at < end_at)
        .where((services_t.c.gone_at.is_(None)) | (services_t.c.gone_at > start_at))
        .order_by(services_t.c.name)
    ).all()
    ids = [s.id for s in services]
    history: dict[int, list] = {}
    instances: dict[int, list] = {}
    for chunk in chunks(ids):
        # Transitions after the period are replayed too: they rewind today's state to its end.
        for row in db.execute(
            select(
                transitions_t.c.instance_id,
                transitions_t.c.at,
                transitions_t.c.from_state,
                transitions_t.c.to_state,
                transitions_t.c.check_id,
                transitions_t.c.output,
            )
            .where(transitions_t.c.service_id.in_(chunk), transitions_t.c.at > start_at)
            .order_by(transitions_t.c.at.desc(), transitions_t.c.id.desc())
        ):
            history.setdefault(row.instance_id, []).append(row)
        for row in db.execute(
            select(
                instances_t.c.id,
                instances_t.c.service_id,
                instances_t.c.source_id,
                instances_t.c.health,
                instances_t.c.first_seen_at,
                instances_t.c.gone_at,
            ).where(instances_t.c.service_id.in_(chunk))
        ):
            instances.setdefault(row.service_id, []).append(row)
    found = []
    for service in services:
        since = max(start_at, service.first_seen_at)
        members = instances.get(service.id, [])
        spans = sweep_service_spans(
            instance_spans(
                instance_state(i), history.get(i.id, []), instance_start(i, since), end_at
            )
            for i in members
        )
        criticals = sorted(
            (t.at, i.source_id, t.check_id, t.output)
            for i in members
            for t in history.get(i.id, [])
            if t.to_state == "critical" and t.at < end_at
        )
        found.append(ServiceHistory(service.name, spans, criticals))
    return found


def sweep_service_spans(per_instance: Iterable[list[Span]]) -> list[Span]:
    """Roll instance spans up into the service's states, as `strips.service_spans` does.

    The same states and notes (the rollup of app/store/catalog.py), computed by one sweep over
    the span boundaries with a count per state, so a month of a busy service stays linear.
    """
    edges: list[tuple[datetime, int, str]] = []
    for spans in per_instance:
        for span in spans:
            edges.append((span.start_at, 1, span.state))
            edges.append((span.end_at, -1, span.state))
    edges.sort(key=lambda e: (e[0], e[1]))
    counts: Counter[str] = Counter()
    result: list[Span] = []
    i = 0
    while i < len(edges):
        at = edges[i][0]
        while i < len(edges) and edges[i][0] == at:
            counts[edges[i][2]] += edges[i][1]
            i += 1
        if i == len(edges) or sum(counts.values()) == 0:
            continue
        state, note = _rolled_up(counts)
        end = edges[i][0]
        if result and result[-1].state == state and result[-1].end_at == at:
            previous = result[-1]
            worst = previous.note if len(previous.note) >= len(note) else note
            result[-1] = Span(state, previous.start_at, end, worst)
        else:
            result.append(Span(state, at, end, note))
    return result


def _rolled_up(counts: Counter[str]) -> tuple[str, str]:
    live = sum(n for state, n in counts.items() if state != "gone")
    if live == 0:
        return "gone", ""
    active = live - counts["maintenance"]
    if active == 0:
        state = "maintenance"
    elif active - counts["unknown"] == 0:
        return "unknown", ""
    elif counts["critical"]:
        state = "critical"
    elif counts["warning"]:
        state = "warning"
    else:
        return "passing", ""
    count = counts[state]
    return state, f"{count} of {live} instance{'' if live == 1 else 's'} {state}"


def _cause_before(db: Session, service: str, at: datetime) -> dict:
    """The last transition to critical of the service at or before `at` (an older incident)."""
    row = db.execute(
        select(instances_t.c.source_id, transitions_t.c.check_id, transitions_t.c.output)
        .select_from(
            transitions_t.join(instances_t, instances_t.c.id == transitions_t.c.instance_id)
        )
        .join(services_t, services_t.c.id == transitions_t.c.service_id)
        .where(services_t.c.name == service, transitions_t.c.to_state == "critical")
        .where(transitions_t.c.at <= at)
        .order_by(transitions_t.c.at.desc(), transitions_t.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return {"instance": "", "check": "", "output": ""}
    return {"instance": row.source_id, "check": row.check_id, "output": one_line(row.output)}


def health_figures(
    db: Session, start_at: datetime, end_at: datetime
) -> tuple[dict[str, dict], list[dict]]:
    """Return each service's availability figures and its critical periods (incidents)."""
    per_service: dict[str, dict] = {}
    incidents: list[dict] = []
    for history in read_service_histories(db, start_at, end_at):
        observed = up = critical = 0.0
        for span in history.spans:
            seconds = (min(span.end_at, end_at) - max(span.start_at, start_at)).total_seconds()
            if seconds <= 0 or span.state in UNOBSERVED:
                continue
            observed += seconds
            if span.state in UP:
                up += seconds
            elif span.state == "critical":
                critical += seconds
        count = 0
        for span in history.spans:
            if span.state != "critical":
                continue
            count += 1
            incidents.append(_incident(db, history, span, start_at, end_at))
        per_service[history.name] = {
            "service": history.name,
            "availability": up / observed if observed else None,
            "observed_s": round(observed, 3),
            "critical_s": round(critical, 3),
            "incidents": count,
        }
    return per_service, incidents


def _incident(db: Session, history: ServiceHistory, span: Span, start_at, end_at) -> dict:
    begin, finish = max(span.start_at, start_at), min(span.end_at, end_at)
    first = history.first_critical_in(span.start_at, span.end_at)
    if first is not None:
        _at, instance, check, output = first
        cause = {"instance": instance, "check": check, "output": one_line(output)}
    else:  # critical since before the period
        cause = _cause_before(db, history.name, span.start_at)
    return {
        "service": history.name,
        "kind": "health",
        "start_at": iso(begin),
        "end_at": None if span.end_at >= end_at else iso(finish),
        "began_before": span.start_at <= start_at,
        "duration_s": round((finish - begin).total_seconds(), 3),
        "cause": cause,
        "note": span.note,
    }


def probe_figures(
    db: Session, start_at: datetime, end_at: datetime
) -> tuple[dict[str, list[dict]], list[dict]]:
    """Return each service's probes (availability from results) and the probes' failing periods."""
    passed = func.sum(case((ProbeResultRow.ok.is_(True), 1), else_=0))
    rows = db.execute(
        select(ProbeResultRow.name, ProbeResultRow.service, passed, func.count())
        .where(ProbeResultRow.at >= start_at, ProbeResultRow.at < end_at)
        .group_by(ProbeResultRow.name, ProbeResultRow.service)
        .order_by(ProbeResultRow.name)
    ).all()
    per_service: dict[str, list[dict]] = {}
    for name, service, ok, total in rows:
        per_service.setdefault(service, []).append(
            {"name": name, "availability": (ok or 0) / total, "results": total}
        )
    names = sorted({r[0] for r in rows} | _probes_with_transitions(db, start_at, end_at))
    incidents = []
    for name in names:
        incidents.extend(_probe_incidents(db, name, start_at, end_at))
    return per_service, incidents


def _probes_with_transitions(db: Session, start_at: datetime, end_at: datetime) -> set[str]:
    return set(
        db.scalars(
            select(ProbeTransition.name)
            .where(ProbeTransition.at >= start_at, ProbeTransition.at < end_at)
            .distinct()
        )
    )


def _probe_incidents(db: Session, name: str, start_at: datetime, end_at: datetime) -> list[dict]:
    before = db.scalars(
        select(ProbeTransition)
        .where(ProbeTransition.name == name, ProbeTransition.at < start_at)
        .order_by(ProbeTransition.at.desc(), ProbeTransition.id.desc())
        .limit(1)
    ).first()
    during: Sequence[ProbeTransition] = db.scalars(
        select(ProbeTransition)
        .where(ProbeTransition.name == name)
        .where(ProbeTransition.at >= start_at, ProbeTransition.at < end_at)
        .order_by(ProbeTransition.at, ProbeTransition.id)
    ).all()
    found = []
    opened = before if before is not None and before.to_state == "failing" else None
    for t in during:
        if t.to_state == "failing" and opened is None:
            opened = t
        elif t.to_state != "failing" and opened is not None:
            found.append(_probe_incident(opened, t.at, start_at, end_at))
            opened = None
    if opened is not None:
        found.append(_probe_incident(opened, None, start_at, end_at))
    return found


def _probe_incident(opened: ProbeTransition, closed_at, start_at, end_at) -> dict:
    begin = max(opened.at, start_at)
    finish = closed_at or end_at
    return {
        "service": opened.service,
        "kind": "probe",
        "start_at": iso(begin),
        "end_at": iso(closed_at) if closed_at else None,
        "began_before": opened.at < start_at,
        "duration_s": round((finish - begin).total_seconds(), 3),
        "cause": {
            "instance": "",
            "check": f"probe:{opened.name}",
            "output": one_line(opened.detail),
        },
        "note": "",
    }
