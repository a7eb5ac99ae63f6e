"""Services and their instances as pages and the API show them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import Check, HealthTransition, Instance, Service
from app.queries.sources import SourceView, iso
from app.store.catalog import HEALTH_RANK

HEALTH_FILTERS = ("passing", "warning", "critical", "maintenance", "unknown", "gone")


@dataclass(frozen=True)
class ServiceFilter:
    """What the person asked to see."""

    search: str = ""
    health: str = ""
    tag: str = ""
    include_gone: bool = False


def list_services(db: Session, flt: ServiceFilter = ServiceFilter()) -> list[Service]:
    """Return matching services, worst health first, then by name."""
    query = select(Service).order_by(Service.health_rank.desc(), Service.name)
    if flt.health == "gone":
        query = query.where(Service.gone_at.is_not(None))
    else:
        if not flt.include_gone:
            query = query.where(Service.gone_at.is_(None))
        if flt.health:
            query = query.where(Service.health == flt.health)
    if flt.search:
        escaped = flt.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Service.name.ilike(f"%{escaped}%", escape="\\"))
    services = list(db.scalars(query))
    if flt.tag:
        services = [s for s in services if flt.tag in (s.tags or [])]
    return services


def all_tags(services: list[Service]) -> list[str]:
    """Return the tags in use, sorted, for the filter menu."""
    return sorted({tag for s in services for tag in (s.tags or [])})


def service_state(service: Service) -> str:
    """Name the state a service is shown in ("gone" once it left the catalog)."""
    return "gone" if service.gone_at is not None else service.health


def service_summary_json(service: Service, source: SourceView | None) -> dict:
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


def _observed_at(service: Service, source: SourceView | None) -> datetime:
    # With blocking queries a quiet service is re-confirmed by every successful pass.
    if source is not None and source.last_success_at and service.gone_at is None:
        return max(service.observed_at, source.last_success_at)
    return service.observed_at


@dataclass
class ServiceDetail:
    """A service with its instances, their checks and its recent transitions."""

    service: Service
    instances: list[Instance]
    checks: dict[int, list[Check]]
    transitions: list[HealthTransition]


def get_service(
    db: Session, name: str, now: datetime, window: timedelta = timedelta(hours=24)
) -> ServiceDetail | None:
    """Load one service for its page, or None when it was never seen."""
    service = db.scalar(
        select(Service).where(Service.name == name).options(selectinload(Service.instances))
    )
    if service is None:
        return None
    instances = sorted(
        service.instances,
        key=lambda i: (i.gone_at is not None, -_rank(i.health), i.node, i.source_id),
    )
    checks: dict[int, list[Check]] = {i.id: [] for i in instances}
    if instances:
        for check in db.scalars(
            select(Check)
            .where(Check.instance_id.in_(list(checks)))
            .order_by(Check.kind.desc(), Check.check_id)
        ):
            checks[check.instance_id].append(check)
    transitions = list(
        db.scalars(
            select(HealthTransition)
            .where(HealthTransition.service_id == service.id, HealthTransition.at >= now - window)
            .order_by(HealthTransition.at.desc(), HealthTransition.id.desc())
            .limit(500)
        )
    )
    return ServiceDetail(service, instances, checks, transitions)


def _rank(health: str) -> int:
    return HEALTH_RANK.get(health, -1)


def service_detail_json(detail: ServiceDetail, source: SourceView | None) -> dict:
    """Render a service as DESIGN §5 `GET /api/v1/services/<name>`."""
    ids = {i.id: i for i in detail.instances}
    body = service_summary_json(detail.service, source)
    body["instances"] = [
        {
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
            "checks": [
                {
                    "name": c.name or c.check_id,
                    "id": c.check_id,
                    "status": c.status,
                    "output": c.output,
                    "kind": c.kind,
                    "notes": c.notes or None,
                }
                for c in detail.checks.get(inst.id, [])
            ],
            "lb": [],
            "observed_at": iso(inst.observed_at),
            "gone_at": iso(inst.gone_at),
        }
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
    return body
