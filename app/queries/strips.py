"""Health over time: 24-hour strips drawn from state transitions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import HealthTransition, Instance
from app.store.catalog import rollup

WINDOW = timedelta(hours=24)
_CHUNK = 500

instances_t = Instance.__table__
transitions_t = HealthTransition.__table__


@dataclass(frozen=True)
class Span:
    """A state held from one time to another, and what explained it."""

    state: str
    start_at: datetime
    end_at: datetime
    note: str = ""


@dataclass(frozen=True)
class StripSegment:
    """A span placed on a health strip: percentages of the window, and a tooltip."""

    state: str
    start_pct: float
    width_pct: float
    title: str
    start_at: datetime
    end_at: datetime


def instance_spans(
    current: str,
    transitions: Sequence,
    start_at: datetime,
    end_at: datetime,
) -> list[Span]:
    """Reconstruct an instance's states in [start_at, end_at], oldest first.

    `transitions` are the instance's, newest first. Walking back from the current state, the
    state before each transition is its `from_state`; what precedes the oldest one is assumed
    to have held since `start_at`.
    """
    spans: list[Span] = []
    state, until = current, end_at
    for t in transitions:
        if t.at <= start_at:
            break
        if t.at < until:
            explains = t.to_state == state and state != "passing"
            note = _one_line(t.output) if explains else ""
            spans.append(Span(state, t.at, until, note))
            until = t.at
        state = t.from_state
    if until > start_at:
        spans.append(Span(state, start_at, until))
    spans.reverse()
    return spans


def service_spans(per_instance: Iterable[list[Span]]) -> list[Span]:
    """Roll instance spans up into the service's state over time, as the store rolls up health.

    Gone instances do not count; a stretch where every known instance is gone is "gone".
    """
    per_instance = [spans for spans in per_instance if spans]
    cuts = sorted({t for spans in per_instance for s in spans for t in (s.start_at, s.end_at)})
    result: list[Span] = []
    cursors = [0] * len(per_instance)
    for start, end in zip(cuts, cuts[1:], strict=False):
        present: list[str] = []
        for n, spans in enumerate(per_instance):
            while cursors[n] < len(spans) and spans[cursors[n]].end_at <= start:
                cursors[n] += 1
            if cursors[n] < len(spans) and spans[cursors[n]].start_at <= start:
                present.append(spans[cursors[n]].state)
        if not present:
            continue
        live = [s for s in present if s != "gone"]
        state = rollup(live)[0] if live else "gone"
        note = _service_note(state, live)
        if result and result[-1].state == state and result[-1].end_at == start:
            previous = result[-1]
            worst_note = previous.note if len(previous.note) >= len(note) else note
            result[-1] = Span(state, previous.start_at, end, worst_note)
        else:
            result.append(Span(state, start, end, note))
    return result


def _service_note(state: str, live: list[str]) -> str:
    if state in ("passing", "gone", "unknown") or not live:
        return ""
    count = sum(1 for s in live if s == state)
    return f"{count} of {len(live)} instance{'' if len(live) == 1 else 's'} {state}"


def strip_segments(
    spans: Iterable[Span], start_at: datetime, end_at: datetime
) -> list[StripSegment]:
    """Place spans on a strip of [start_at, end_at] with tooltips like
    "critical 03:12–03:19 UTC, 7 min (HTTP 503)"."""
    window = (end_at - start_at).total_seconds()
    segments = []
    for span in spans:
        begin, finish = max(span.start_at, start_at), min(span.end_at, end_at)
        if finish <= begin or window <= 0:
            continue
        segments.append(
            StripSegment(
                state=span.state,
                start_pct=round((begin - start_at).total_seconds() / window * 100, 3),
                width_pct=round((finish - begin).total_seconds() / window * 100, 3),
                title=_span_title(
                    span.state, begin, finish, begin <= start_at, finish >= end_at, span.note
                ),
                start_at=begin,
                end_at=finish,
            )
        )
    return segments


def _span_title(
    state: str, begin: datetime, finish: datetime, clipped: bool, ongoing: bool, note: str
) -> str:
    length = _duration((finish - begin).total_seconds())
    if clipped and ongoing:
        text = f"{state} throughout, {length}"
    elif clipped:
        text = f"{state} until {finish:%H:%M} UTC"
    elif ongoing:
        text = f"{state} since {begin:%H:%M} UTC, {length} so far"
    else:
        text = f"{state} {begin:%H:%M}–{finish:%H:%M} UTC, {length}"
    return f"{text} ({note})" if note else text


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _one_line(text: str | None, limit: int = 140) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def strip_start(service, start_at: datetime) -> datetime:
    """Nothing is drawn before the service was first seen."""
    first = getattr(service, "first_seen_at", None)
    return max(start_at, first) if first else start_at


def instance_start(instance, service_start_at: datetime) -> datetime:
    """An instance's strip starts when it was first seen (older rows: with its service)."""
    first = getattr(instance, "first_seen_at", None)
    return max(service_start_at, first) if first else service_start_at


def service_strips(db: Session, services: Sequence, now: datetime) -> dict[int, list[StripSegment]]:
    """Compute the 24 h strip of each listed service from its instances' transitions."""
    start_at = now - WINDOW
    history: dict[int, list] = {}
    busy: set[int] = set()
    for chunk in chunks([s.id for s in services]):
        for row in db.execute(
            select(
                transitions_t.c.service_id,
                transitions_t.c.instance_id,
                transitions_t.c.at,
                transitions_t.c.from_state,
                transitions_t.c.to_state,
                transitions_t.c.output,
            )
            .where(transitions_t.c.service_id.in_(chunk), transitions_t.c.at >= start_at)
            .order_by(transitions_t.c.at.desc(), transitions_t.c.id.desc())
        ):
            history.setdefault(row.instance_id, []).append(row)
            busy.add(row.service_id)
    # Only services that changed in the window need their instances replayed.
    instances: dict[int, list] = {}
    for chunk in chunks(sorted(busy)):
        for row in db.execute(
            select(
                instances_t.c.id,
                instances_t.c.service_id,
                instances_t.c.health,
                instances_t.c.first_seen_at,
                instances_t.c.gone_at,
            ).where(instances_t.c.service_id.in_(chunk))
        ):
            instances.setdefault(row.service_id, []).append(row)
    strips = {}
    for service in services:
        since = strip_start(service, start_at)
        if service.id in busy:
            spans = service_spans(
                instance_spans(
                    instance_state(i), history.get(i.id, []), instance_start(i, since), now
                )
                for i in instances.get(service.id, [])
            )
        else:
            spans = _quiet_spans(service, since, now)
        strips[service.id] = strip_segments(spans, start_at, now)
    return strips


def _quiet_spans(service, since: datetime, now: datetime) -> list[Span]:
    """No instance changed in the window: the service held its present state throughout."""
    gone_at = service.gone_at
    if gone_at is not None and gone_at > since:
        return [Span("unknown", since, gone_at), Span("gone", gone_at, now)]
    return [Span(("gone" if service.gone_at is not None else service.health), since, now)]


def instance_state(instance) -> str:
    return "gone" if instance.gone_at is not None else instance.health


def chunks(values: Sequence, size: int = _CHUNK):
    for begin in range(0, len(values), size):
        yield values[begin : begin + size]
