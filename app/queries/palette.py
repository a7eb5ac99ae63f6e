"""Find what the command palette offers for a typed text: services, instances, traces, actions.

Every query is bounded: a name prefix is a range scan of a unique index, a substring search
stops at its limit, and traces are looked for among the most recent ones only.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session

from app.models import Instance, Service, Trace

DEFAULT_LIMIT = 20
MAX_LIMIT = 50
MAX_TEXT = 200
# Traces are searched by operation among this many of the newest (ix_traces_start).
RECENT_TRACES = 2000
# How many of the best service / instance matches get their actions listed.
ACTION_TARGETS = 2
HEX = re.compile(r"[0-9a-f]{4,32}")
# A leading verb narrows the palette to one kind of action: "drain orders-2", "map payments".
VERBS = {"drain": "drain", "map": "map", "traces": "traces", "trace": "traces"}


@dataclass(frozen=True)
class PaletteItem:
    """One thing the palette can open."""

    kind: str  # service | instance | trace | action
    label: str
    detail: str
    url: str
    health: str | None = None

    def json(self) -> dict:
        """The item as the API answers it."""
        return asdict(self)


@dataclass(frozen=True)
class PaletteLinks:
    """The URLs the palette points at, built by the view with url_for."""

    service: object  # name -> URL of its page
    instance: object  # (service name, instance row id) -> URL of the instance on that page
    trace: object  # trace id -> URL
    map_focus: object  # service name -> URL of the map focused on it
    traces_of: object  # service name -> URL of its traces


def search_palette(
    db: Session,
    text: str,
    links: PaletteLinks,
    *,
    can_act: bool,
    limit: int = DEFAULT_LIMIT,
) -> list[PaletteItem]:
    """Return at most `limit` items matching the text, best first (worst services when empty)."""
    text = " ".join(text.split())[:MAX_TEXT]
    verb, _, rest = text.partition(" ")
    only = VERBS.get(verb.lower()) if rest or verb.lower() in VERBS else None
    needle = rest if only else text
    if only == "drain" and not can_act:
        return []
    if only:
        return _actions_only(db, only, needle, links, limit)
    # Each kind gets a share, so a text that matches many services still shows its traces.
    share = max(4, limit // 3)
    items: list[PaletteItem] = []
    services = _services(db, needle, share)
    # The best matches carry their actions right under them.
    for rank, row in enumerate(services):
        items.append(_service_item(row, links))
        if rank < ACTION_TARGETS and needle:
            items += _service_actions(row, links)
    instances = _instances(db, needle, share) if needle else []
    for rank, (row, name) in enumerate(instances):
        items.append(_instance_item(row, name, links))
        if rank < ACTION_TARGETS and can_act:
            items.append(_drain_item(row, name, links))
    items += [_trace_item(t, links) for t in _traces(db, needle, share)]
    return items[:limit]


def _actions_only(db, only: str, needle: str, links: PaletteLinks, limit: int) -> list:
    if only == "drain":
        return [_drain_item(i, name, links) for i, name in _instances(db, needle, limit)][:limit]
    services = _services(db, needle, limit)
    if only == "map":
        return [_map_item(s, links) for s in services]
    return [_traces_item(s, links) for s in services]


def _services(db: Session, needle: str, limit: int) -> list:
    columns = (Service.id, Service.name, Service.health, Service.n_total)
    live = Service.gone_at.is_(None)
    if not needle:
        query = select(*columns).where(live).order_by(Service.health_rank.desc(), Service.name)
        return list(db.execute(query.limit(min(limit, 8))))
    # A prefix first: a range over the unique index on name, in name order.
    prefix = db.execute(
        select(*columns)
        .where(live, *_prefix_range(Service.name, needle))
        .order_by(Service.name)
        .limit(limit)
    ).all()
    rows = [r for r in prefix if r.name.startswith(needle)]
    if len(rows) < limit:
        seen = [r.id for r in rows]
        contains = db.execute(
            select(*columns)
            .where(
                live,
                func.lower(Service.name).contains(needle.lower(), autoescape=True),
                Service.id.not_in(seen) if seen else true(),
            )
            .order_by(func.length(Service.name), Service.name)
            .limit(limit - len(rows))
        ).all()
        rows += contains
    return rows


def _instances(db: Session, needle: str, limit: int) -> list:
    lowered = needle.lower()
    query = (
        select(
            Instance.id,
            Instance.source_id,
            Instance.node,
            Instance.address,
            Instance.port,
            Instance.health,
            Service.name,
        )
        .join(Service, Service.id == Instance.service_id)
        .where(
            Instance.gone_at.is_(None),
            or_(
                func.lower(Instance.source_id).contains(lowered, autoescape=True),
                func.lower(Instance.node).contains(lowered, autoescape=True),
                Instance.address.startswith(needle, autoescape=True),
            ),
        )
        .order_by(func.length(Instance.source_id), Instance.source_id)
        .limit(limit)
    )
    return [(row, row.name) for row in db.execute(query)]


def _traces(db: Session, needle: str, limit: int) -> list:
    columns = (
        Trace.trace_id,
        Trace.root_service,
        Trace.root_operation,
        Trace.start_ns,
        Trace.end_ns,
        Trace.error_count,
    )
    if not needle:
        query = select(*columns).order_by(Trace.start_ns.desc()).limit(min(limit, 5))
        return list(db.execute(query))
    found = []
    lowered = needle.lower()
    if HEX.fullmatch(lowered):
        found = db.execute(
            select(*columns)
            .where(*_prefix_range(Trace.trace_id, lowered))
            .order_by(Trace.trace_id)
            .limit(limit)
        ).all()
        found = [t for t in found if t.trace_id.startswith(lowered)]
    if len(found) < limit:
        recent = select(*columns).order_by(Trace.start_ns.desc()).limit(RECENT_TRACES).subquery()
        found += db.execute(
            select(recent)
            .where(func.lower(recent.c.root_operation).contains(lowered, autoescape=True))
            .order_by(recent.c.start_ns.desc())
            .limit(limit - len(found))
        ).all()
    return found


def _prefix_range(column, prefix: str) -> tuple:
    """name >= prefix and name < the next string after every name that starts with it."""
    upper = prefix[:-1] + chr(min(ord(prefix[-1]) + 1, 0x10FFFF))
    return (and_(column >= prefix, column < upper),)


def _service_item(row, links: PaletteLinks) -> PaletteItem:
    count = f"{row.n_total} instance{'' if row.n_total == 1 else 's'}"
    return PaletteItem(
        "service",
        row.name,
        f"service · {row.health} · {count}",
        links.service(row.name),
        row.health,
    )


def _service_actions(row, links: PaletteLinks) -> list[PaletteItem]:
    return [_map_item(row, links), _traces_item(row, links)]


def _map_item(row, links: PaletteLinks) -> PaletteItem:
    return PaletteItem(
        "action", f"Open the map focused on {row.name}", "action · map", links.map_focus(row.name)
    )


def _traces_item(row, links: PaletteLinks) -> PaletteItem:
    return PaletteItem(
        "action", f"Search traces of {row.name}", "action · traces", links.traces_of(row.name)
    )


def _instance_item(row, service: str, links: PaletteLinks) -> PaletteItem:
    where = f"{row.address}:{row.port}" if row.address else row.node
    return PaletteItem(
        "instance",
        row.source_id,
        f"instance of {service} · {row.health} · {where}",
        links.instance(service, row.id),
        row.health,
    )


def _drain_item(row, service: str, links: PaletteLinks) -> PaletteItem:
    # The plan and the confirmation happen on the instance's own page, never from the palette.
    return PaletteItem(
        "action",
        f"Drain {row.source_id}",
        f"action · plan a drain of this {service} instance",
        links.instance(service, row.id),
    )


def _trace_item(row, links: PaletteLinks) -> PaletteItem:
    took_ms = (row.end_ns - row.start_ns) / 1e6
    detail = f"trace {row.trace_id[:12]}… · {took_ms:.0f} ms"
    if row.error_count:
        detail += f" · {row.error_count} error span{'' if row.error_count == 1 else 's'}"
    label = f"{row.root_service or '(root not received)'} {row.root_operation}".strip()
    health = "critical" if row.error_count else None
    return PaletteItem("trace", label, detail, links.trace(row.trace_id), health)
