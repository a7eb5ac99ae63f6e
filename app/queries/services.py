"""Services and their instances as pages and the API show them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import Row, null, select
from sqlalchemy.orm import Session, selectinload

from app.models import Check, HealthTransition, Instance, Service, ServiceUpstream
from app.queries.metrics import AlertView, RedFigures, service_alerts, service_red_or_traces
from app.queries.sources import SourceView, iso
from app.queries.strips import (
    WINDOW,
    StripSegment,
    chunks,
    instance_spans,
    instance_start,
    instance_state,
    service_spans,
    service_strips,
    strip_segments,
    strip_start,
)
from app.store.catalog import HEALTH_RANK

HEALTH_FILTERS = ("passing", "warning", "critical", "maintenance", "unknown", "gone")
PROXY_KIND = "connect-proxy"
# The API keeps its historic cap; the page lists fewer and says how many more there are.
API_TRANSITIONS = 500
_CHUNK = 500

services_t = Service.__table__
instances_t = Instance.__table__
transitions_t = HealthTransition.__table__

# What the Services list and the API read per row: everything but meta, the one big JSON value.
_LIST_COLUMNS = [
    services_t.c[name]
    for name in (
        "id",
        "name",
        "source",
        "kind",
        "tags",
        "versions",
        "health",
        "health_rank",
        "n_total",
        "n_passing",
        "n_warning",
        "n_critical",
        "n_maintenance",
        "first_seen_at",
        "observed_at",
        "gone_at",
    )
]


# What filtering needs to know of every service.
_INDEX_COLUMNS = ("id", "name", "kind", "tags", "health", "health_rank", "gone_at")


def service_topic(name: str) -> str:
    """Name the live-update topic of one service.

    Topics travel in a space-separated attribute, so the name is percent-encoded (UTF-8,
    nothing kept): `service:pay%20ments`. The collection runner publishes the same.
    """
    return "service:" + quote(name, safe="")


@dataclass(frozen=True)
class ServiceFilter:
    """What the person asked to see."""

    search: str = ""
    health: str = ""
    tag: str = ""
    include_gone: bool = False
    include_proxies: bool = True
    offset: int = 0
    limit: int | None = None


def service_state(service) -> str:
    """Name the state a service is shown in ("gone" once it left the catalog)."""
    return "gone" if service.gone_at is not None else service.health


def is_proxy(service) -> bool:
    """Tell whether a service is a Consul Connect sidecar proxy."""
    return service.kind == PROXY_KIND


def _hidden_by(row, flt: ServiceFilter) -> str | None:
    """Return why a service is not listed ("filter", "gone", "proxy"), or None if it is."""
    state = service_state(row)
    if flt.health and state != flt.health:
        return "filter"
    if flt.tag and flt.tag not in (row.tags or ()):
        return "filter"
    if flt.search:
        needle = flt.search.casefold()
        haystack = [row.name, *(row.tags or ()), *(row.versions or ())]
        if not any(needle in str(text).casefold() for text in haystack):
            return "filter"
    if state == "gone" and not flt.include_gone and flt.health != "gone":
        return "gone"
    if is_proxy(row) and not flt.include_proxies:
        return "proxy"
    return None


def _ranked_rows(db: Session, flt: ServiceFilter | None = None) -> list[Row]:
    query = select(*_LIST_COLUMNS).order_by(services_t.c.health_rank.desc(), services_t.c.name)
    if flt is not None and flt.health == "gone":
        query = query.where(services_t.c.gone_at.is_not(None))
    elif flt is not None and not flt.include_gone:
        query = query.where(services_t.c.gone_at.is_(None))
    return list(db.execute(query))


def list_services(db: Session, flt: ServiceFilter = ServiceFilter()) -> list[Row]:
    """Return matching services, worst health first, then by name.

    Rows carry Service's columns except `meta`, as attributes. `offset`/`limit` page them.
    """
    rows = [r for r in _ranked_rows(db, flt) if _hidden_by(r, flt) is None]
    end = None if flt.limit is None else flt.offset + flt.limit
    return rows[flt.offset : end]


def current_health(db: Session) -> list[Row]:
    """Every service now in the catalog, worst first, with its health and instance counts."""
    columns = [
        services_t.c[name]
        for name in (
            *("id", "name", "source", "kind", "health", "health_rank", "first_seen_at", "gone_at"),
            *("n_total", "n_passing", "n_warning", "n_critical", "n_maintenance"),
        )
    ]
    return list(
        db.execute(
            select(*columns)
            .where(services_t.c.gone_at.is_(None))
            .order_by(services_t.c.health_rank.desc(), services_t.c.name)
        )
    )


def all_tags(services: Iterable) -> list[str]:
    """Return the tags in use, sorted, for the filter menu."""
    return sorted({tag for s in services for tag in (s.tags or [])})


@dataclass
class ServiceListing:
    """One page of the Services list, and honest counts of what it does not show."""

    services: list[Row]
    total: int
    offset: int
    page_size: int
    by_state: dict[str, int]
    hidden_proxies: int
    hidden_gone: int
    tags: list[str]
    strips: dict[int, list[StripSegment]] = field(default_factory=dict)

    @property
    def shown_to(self) -> int:
        """The 1-based position of the last row on this page."""
        return self.offset + len(self.services)


def browse_services(
    db: Session, flt: ServiceFilter, now: datetime, page_size: int, strips: bool = True
) -> ServiceListing:
    """Return one page of matching services (worst first) with counts of the rest."""
    # Filter on a narrow read of every service; load the shown page's other columns after.
    # Versions are only searched, so without a search they are not read (nor decoded) at all.
    columns = [services_t.c[name] for name in _INDEX_COLUMNS]
    columns.append(services_t.c.versions if flt.search else null().label("versions"))
    rows = list(
        db.execute(select(*columns).order_by(services_t.c.health_rank.desc(), services_t.c.name))
    )
    matched: list[Row] = []
    by_state = dict.fromkeys(HEALTH_FILTERS, 0)
    hidden = {"proxy": 0, "gone": 0}
    for row in rows:
        reason = _hidden_by(row, flt)
        if reason is None:
            matched.append(row)
            state = service_state(row)
            by_state[state] = by_state.get(state, 0) + 1
        elif reason in hidden:
            hidden[reason] += 1
    offset = min(flt.offset, max(len(matched) - 1, 0) // page_size * page_size)
    page_ids = [row.id for row in matched[offset : offset + page_size]]
    full = {}
    for chunk in chunks(page_ids):
        for row in db.execute(select(*_LIST_COLUMNS).where(services_t.c.id.in_(chunk))):
            full[row.id] = row
    page = [full[i] for i in page_ids if i in full]
    listing = ServiceListing(
        services=page,
        total=len(matched),
        offset=offset,
        page_size=page_size,
        by_state=by_state,
        hidden_proxies=hidden["proxy"],
        hidden_gone=hidden["gone"],
        tags=all_tags(r for r in rows if r.gone_at is None),
    )
    if strips:
        listing.strips = service_strips(db, page, now)
    return listing


# -- one service --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbour:
    """A service named by another (an upstream, a dependant), with its health if seen."""

    name: str
    state: str | None  # None: never seen by any source


@dataclass
class ProxyView:
    """A sidecar proxy service that fronts this one, with its instances and their checks."""

    service: Service
    instances: list[Instance]
    checks: dict[int, list[Check]]


@dataclass
class ServiceDetail:
    """A service with its instances, their checks and its recent transitions."""

    service: Service
    instances: list[Instance]
    checks: dict[int, list[Check]]
    transitions: list[HealthTransition]  # newest first, at most API_TRANSITIONS
    window_start_at: datetime | None = None
    now: datetime | None = None
    transitions_in_window: int = 0
    strip: list[StripSegment] = field(default_factory=list)
    instance_strips: dict[int, list[StripSegment]] = field(default_factory=dict)
    upstreams: list[Neighbour] = field(default_factory=list)
    used_by: list[Neighbour] = field(default_factory=list)
    proxies: list[ProxyView] = field(default_factory=list)
    proxy_for: Neighbour | None = None
    red: RedFigures | None = None  # Prometheus's current figures, else the spans' ("traces")
    alerts: list[AlertView] = field(default_factory=list)  # firing now, unsilenced first

    @property
    def current_instances(self) -> list[Instance]:
        """Instances the source lists now, worst first."""
        return [i for i in self.instances if i.gone_at is None]

    @property
    def recently_gone(self) -> list[Instance]:
        """Instances that left within the window, latest first."""
        start = self.window_start_at
        gone = [
            i for i in self.instances if i.gone_at is not None and (not start or i.gone_at >= start)
        ]
        return sorted(gone, key=lambda i: i.gone_at, reverse=True)

    @property
    def older_gone(self) -> int:
        """How many instances left before the window (not shown on the page)."""
        return sum(1 for i in self.instances if i.gone_at is not None) - len(self.recently_gone)


def get_service(
    db: Session, name: str, now: datetime, window: timedelta = WINDOW
) -> ServiceDetail | None:
    """Load one service for its page, or None when it was never seen."""
    service = db.scalar(
        select(Service).where(Service.name == name).options(selectinload(Service.instances))
    )
    if service is None:
        return None
    start_at = now - window
    instances = sorted(
        service.instances,
        key=lambda i: (i.gone_at is not None, -_rank(i.health), i.node, i.source_id),
    )
    checks = _checks_of(db, instances)
    history = list(
        db.scalars(
            select(HealthTransition)
            .where(HealthTransition.service_id == service.id, HealthTransition.at >= start_at)
            .order_by(HealthTransition.at.desc(), HealthTransition.id.desc())
        )
    )
    by_instance: dict[int, list[HealthTransition]] = {}
    for t in history:
        by_instance.setdefault(t.instance_id, []).append(t)
    since = strip_start(service, start_at)
    spans = {
        i.id: instance_spans(
            instance_state(i), by_instance.get(i.id, []), instance_start(i, since), now
        )
        for i in instances
    }
    detail = ServiceDetail(
        service,
        instances,
        checks,
        history[:API_TRANSITIONS],
        window_start_at=start_at,
        now=now,
        transitions_in_window=len(history),
        strip=strip_segments(service_spans(spans.values()), start_at, now),
        instance_strips={i: strip_segments(s, start_at, now) for i, s in spans.items()},
    )
    _add_neighbours(db, detail)
    detail.red = service_red_or_traces(db, service.name, now)
    detail.alerts = service_alerts(db, service.name)
    return detail


def _checks_of(db: Session, instances: Sequence[Instance]) -> dict[int, list[Check]]:
    checks: dict[int, list[Check]] = {i.id: [] for i in instances}
    for chunk in chunks(list(checks)):
        for check in db.scalars(
            select(Check)
            .where(Check.instance_id.in_(chunk))
            .order_by(Check.kind.desc(), Check.check_id)
        ):
            checks[check.instance_id].append(check)
    return checks


def _add_neighbours(db: Session, detail: ServiceDetail) -> None:
    """Fill in Connect upstreams, the services that call this one, and its sidecar proxies."""
    name = detail.service.name
    upstreams = sorted(
        set(db.scalars(select(ServiceUpstream.upstream).where(ServiceUpstream.service == name)))
    )
    used_by = sorted(
        set(db.scalars(select(ServiceUpstream.service).where(ServiceUpstream.upstream == name)))
    )
    destination = (detail.service.meta or {}).get("connect_destination") or ""
    wanted = {*upstreams, *used_by, *([destination] if destination else [])}
    states = {}
    for chunk in chunks(sorted(wanted)):
        for row in db.execute(
            select(services_t.c.name, services_t.c.health, services_t.c.gone_at).where(
                services_t.c.name.in_(chunk)
            )
        ):
            states[row.name] = service_state(row)
    detail.upstreams = [Neighbour(n, states.get(n)) for n in upstreams]
    detail.used_by = [Neighbour(n, states.get(n)) for n in used_by]
    if is_proxy(detail.service) and destination:
        detail.proxy_for = Neighbour(destination, states.get(destination))
    proxy_ids = [
        row.id
        for row in db.execute(
            select(services_t.c.id, services_t.c.meta).where(services_t.c.kind == PROXY_KIND)
        )
        if (row.meta or {}).get("connect_destination") == name
    ]
    if proxy_ids:
        proxies = db.scalars(
            select(Service)
            .where(Service.id.in_(proxy_ids))
            .options(selectinload(Service.instances))
            .order_by(Service.name)
        ).all()
        for proxy in proxies:
            current = sorted(
                (i for i in proxy.instances if i.gone_at is None),
                key=lambda i: (-_rank(i.health), i.node, i.source_id),
            )
            detail.proxies.append(ProxyView(proxy, current, _checks_of(db, current)))


def _rank(health: str) -> int:
    return HEALTH_RANK.get(health, -1)


# -- JSON (DESIGN §5) ---------------------------------------------------------------------------


def service_summary_json(service, source: SourceView | None) -> dict:
    """Render a service as DESIGN §5 `services[]`."""
    stale = source.stale if source else False
    return {
        "name": service.name,
        "health": service.health,
        "instances": {
            "total": service.n_total,
            "passing": service.n_passing,
            "warning": service.n_warning,
            "critical": service.n_critical,
            "maintenance": service.n_maintenance,
        },
        "tags": list(service.tags or []),
        "versions": list(service.versions or []),
        "source": service.source,
        "stale": stale,
        "stale_since": iso(source.stale_since) if source and stale else None,
        "observed_at": iso(_observed_at(service, source)),
        "gone_at": iso(service.gone_at),
    }


def _observed_at(service, source: SourceView | None) -> datetime:
    # With blocking queries a quiet service is re-confirmed by every successful pass.
    if source is not None and source.last_success_at and service.gone_at is None:
        return max(service.observed_at, source.last_success_at)
    return service.observed_at


def service_detail_json(
    detail: ServiceDetail,
    source: SourceView | None,
    lb: dict[str, list[dict]] | None = None,
    sources: dict[str, SourceView] | None = None,
) -> dict:
    """Render a service as DESIGN §5 `GET /api/v1/services/<name>`.

    `lb` holds the balancer rows by instance id (`app.queries.balancers.lb_rows_by_instance`);
    `sources` (every source by name) marks the RED figures and alerts stale with their source.
    """
    sources = sources or {}
    ids = {i.id: i for i in detail.instances}
    lb = lb or {}
    body = service_summary_json(detail.service, source)
    body["instances"] = [
        _instance_json(inst, detail.checks, [] if inst.gone_at else lb.get(inst.source_id, []))
        for inst in detail.instances
    ]
    body["meta"] = dict(detail.service.meta or {})
    body["transitions"] = [
        {
            "at": iso(t.at),
            "instance": ids[t.instance_id].source_id if t.instance_id in ids else None,
            "node": ids[t.instance_id].node if t.instance_id in ids else None,
            "from": t.from_state,
            "to": t.to_state,
            "check": t.check_id or None,
            "output": t.output,
        }
        for t in detail.transitions
    ]
    red = detail.red
    body["red"] = red.to_json(sources.get(red.source)) if red is not None else None
    body["alerts"] = [
        {**a.to_json(), "stale": any(_is_stale(sources.get(s)) for s in a.sources)}
        for a in detail.alerts
    ]
    return body


def _is_stale(source: SourceView | None) -> bool:
    return source.stale if source is not None else False


def _instance_json(inst: Instance, checks: dict[int, list[Check]], lb: list[dict]) -> dict:
    return {
        "id": inst.source_id,
        "node": inst.node,
        "address": inst.address,
        "port": inst.port,
        "health": "gone" if inst.gone_at else inst.health,
        "maintenance": inst.maintenance,
        "maintenance_reason": inst.maintenance_reason or None,
        "version": inst.version,
        "tags": list(inst.tags or []),
        "meta": dict(inst.meta or {}),
        "node_meta": dict(inst.node_meta or {}),
        "checks": [
            {
                "name": c.name or c.check_id,
                "id": c.check_id,
                "status": c.status,
                "output": c.output,
                "kind": c.kind,
                "notes": c.notes or None,
            }
            for c in checks.get(inst.id, [])
        ],
        "lb": lb,
        "observed_at": iso(inst.observed_at),
        "gone_at": iso(inst.gone_at),
    }
