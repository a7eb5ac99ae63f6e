"""Write catalog updates: upsert services and instances, roll up health, record transitions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import Check, HealthTransition, Instance, Service, ServiceUpstream
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord

# Worst first: the order a person on call wants to read them in.
HEALTH_RANK = {"critical": 4, "warning": 3, "maintenance": 2, "unknown": 1, "passing": 0}
GONE_RANK = -1
CHECK_RANK = {"critical": 3, "warning": 2, "passing": 1}
_CHUNK = 500


@dataclass
class CatalogChanges:
    """What one update changed, for the run record and the live feed."""

    services_seen: int = 0
    instances_seen: int = 0
    transitions: int = 0
    changed_services: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        """Return the figures kept on the collector-run record."""
        return {
            "services": self.services_seen,
            "instances": self.instances_seen,
            "transitions": self.transitions,
            "changed_services": len(self.changed_services),
        }


def instance_health(checks: Iterable[CheckRecord], checked: bool = True) -> tuple[str, str]:
    """Return an instance's state and the output that explains it.

    Maintenance is its own state; otherwise the worst check wins (critical > warning >
    passing), and an instance nothing checks is "unknown".
    """
    checks = list(checks)
    maintenance = [c for c in checks if c.kind == "maintenance"]
    if maintenance:
        return "maintenance", maintenance[0].notes or maintenance[0].output
    if not checked or not checks:
        return "unknown", ""
    worst = max(checks, key=lambda c: CHECK_RANK.get(c.status, 3))
    status = worst.status if worst.status in CHECK_RANK else "critical"
    return status, worst.output


def rollup(states: Sequence[str]) -> tuple[str, dict[str, int]]:
    """Roll instance states up into a service state and its counts."""
    counts = {"total": len(states), "passing": 0, "warning": 0, "critical": 0, "maintenance": 0}
    for state in states:
        if state in counts:
            counts[state] += 1
    active = [s for s in states if s != "maintenance"]
    if not states:
        return "unknown", counts
    if not active:
        return "maintenance", counts
    checked = [s for s in active if s != "unknown"]
    if not checked:
        return "unknown", counts
    return max(checked, key=lambda s: HEALTH_RANK[s]), counts


def apply_catalog_update(session: Session, source: str, update: CatalogUpdate) -> CatalogChanges:
    """Upsert the services of one update and record every state change; flush, don't commit."""
    changes = CatalogChanges()
    at = update.observed_at
    names = [record.name for record in update.services]
    with session.no_autoflush:
        existing = _load_services(session, names)
        upstreams = _load_upstreams(session, source, names)
        for record in update.services:
            service = existing.get(record.name)
            if service is None:
                service = Service(
                    name=record.name,
                    source=source,
                    first_seen_at=at,
                    observed_at=at,
                    changed_at=at,
                    health="unknown",
                    health_rank=HEALTH_RANK["unknown"],
                )
                service.instances = []
                session.add(service)
                changes.changed_services.add(record.name)
            elif service.source != source and service.gone_at is None:
                continue  # another source owns this name; the first one keeps it
            service.source = source
            _apply_service(session, service, record, at, changes, upstreams.get(record.name, {}))
        gone_names = set(update.removed)
        if update.complete:
            gone_names |= _names_of_source(session, source) - set(names)
        for service in _load_services(session, gone_names).values():
            if service.source == source and service.gone_at is None:
                _mark_service_gone(session, service, at, changes)
    session.flush()
    return changes


def _load_services(session: Session, names: Iterable[str]) -> dict[str, Service]:
    names = list(names)
    found: dict[str, Service] = {}
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        rows = session.scalars(
            select(Service).where(Service.name.in_(chunk)).options(selectinload(Service.instances))
        )
        found.update({s.name: s for s in rows})
    _load_checks(session, [i for s in found.values() for i in s.instances])
    return found


def _load_checks(session: Session, instances: list[Instance]) -> None:
    by_instance: dict[int, dict[str, Check]] = {i.id: {} for i in instances}
    ids = list(by_instance)
    for start in range(0, len(ids), _CHUNK):
        for check in session.scalars(
            select(Check).where(Check.instance_id.in_(ids[start : start + _CHUNK]))
        ):
            by_instance[check.instance_id][check.check_id] = check
    for instance in instances:
        instance.__dict__["_checks"] = by_instance[instance.id]


def _names_of_source(session: Session, source: str) -> set[str]:
    return set(
        session.scalars(
            select(Service.name).where(Service.source == source, Service.gone_at.is_(None))
        )
    )


def _apply_service(
    session: Session,
    service: Service,
    record: ServiceRecord,
    at: datetime,
    changes: CatalogChanges,
    upstreams: dict[str, ServiceUpstream],
) -> None:
    changes.services_seen += 1
    if service.gone_at is not None:
        service.gone_at = None
        changes.changed_services.add(record.name)
    _set_if_changed(service, "tags", sorted(set(record.tags)), changes, record.name)
    _set_if_changed(service, "meta", dict(record.meta), changes, record.name)
    _set_if_changed(service, "kind", record.kind, changes, record.name)
    service.observed_at = at

    current = {(i.node, i.source_id): i for i in service.instances}
    seen: set[tuple[str, str]] = set()
    states: list[str] = []
    versions: set[str] = set()
    for inst_record in record.instances:
        key = (inst_record.node, inst_record.id)
        seen.add(key)
        instance = current.get(key)
        if instance is None:
            instance = Instance(
                source=service.source,
                source_id=inst_record.id,
                node=inst_record.node,
                observed_at=at,
                health="unknown",
            )
            instance.__dict__["_checks"] = {}
            service.instances.append(instance)
            session.add(instance)
            changes.changed_services.add(record.name)
            _apply_instance(session, service, instance, inst_record, at, changes, new=True)
        else:
            _apply_instance(session, service, instance, inst_record, at, changes, new=False)
        changes.instances_seen += 1
        states.append(instance.health)
        if instance.version:
            versions.add(instance.version)
    for key, instance in current.items():
        if key not in seen and instance.gone_at is None:
            _mark_instance_gone(session, service, instance, at, changes)

    health, counts = rollup(states)
    if health != service.health or service.n_total != counts["total"]:
        changes.changed_services.add(record.name)
    if health != service.health:
        service.changed_at = at
    service.health = health
    service.health_rank = HEALTH_RANK[health]
    service.n_total = counts["total"]
    service.n_passing = counts["passing"]
    service.n_warning = counts["warning"]
    service.n_critical = counts["critical"]
    service.n_maintenance = counts["maintenance"]
    _set_if_changed(service, "versions", sorted(versions), changes, record.name)
    _apply_upstreams(session, service, record, at, upstreams)


def _apply_instance(
    session: Session,
    service: Service,
    instance: Instance,
    record: InstanceRecord,
    at: datetime,
    changes: CatalogChanges,
    *,
    new: bool,
) -> None:
    if instance.gone_at is not None:
        instance.gone_at = None
    for attr, value in (
        ("address", record.address),
        ("port", record.port),
        ("tags", list(record.tags)),
        ("meta", dict(record.meta)),
        ("version", record.version),
    ):
        _set_if_changed(instance, attr, value, changes, service.name)
    instance.observed_at = at
    state, output = instance_health(record.checks, record.checked)
    maintenance = [c for c in record.checks if c.kind == "maintenance"]
    instance.maintenance = bool(maintenance)
    instance.maintenance_reason = (maintenance[0].notes if maintenance else "")[:1000]
    _apply_checks(session, instance, record.checks, at, changes, service.name)
    previous = "gone" if instance.health == "gone" else instance.health
    if new:
        previous = None
    if previous is not None and previous != state:
        cause = _causing_check(record.checks, state)
        session.add(
            HealthTransition(
                service=service,
                instance=instance,
                at=at,
                from_state=previous,
                to_state=state,
                check_id=cause,
                output=output,
            )
        )
        changes.transitions += 1
        changes.changed_services.add(service.name)
    instance.health = state


def _causing_check(checks: Sequence[CheckRecord], state: str) -> str:
    for check in checks:
        if state == "maintenance" and check.kind == "maintenance":
            return check.check_id
        if check.status == state:
            return check.check_id
    return ""


def _apply_checks(
    session: Session,
    instance: Instance,
    records: Sequence[CheckRecord],
    at: datetime,
    changes: CatalogChanges,
    service_name: str,
) -> None:
    current: dict[str, Check] = instance.__dict__.setdefault("_checks", {})
    seen = set()
    for record in records:
        seen.add(record.check_id)
        check = current.get(record.check_id)
        if check is None:
            check = Check(
                instance=instance,
                check_id=record.check_id,
                name=record.name,
                kind=record.kind,
                status=record.status,
                output=record.output,
                notes=record.notes,
                observed_at=at,
            )
            session.add(check)
            current[record.check_id] = check
            changes.changed_services.add(service_name)
            continue
        for attr in ("name", "kind", "status", "output", "notes"):
            _set_if_changed(check, attr, getattr(record, attr), changes, service_name)
        check.observed_at = at
    for check_id in list(current):
        if check_id not in seen:
            session.delete(current.pop(check_id))
            changes.changed_services.add(service_name)


def _apply_upstreams(
    session: Session,
    service: Service,
    record: ServiceRecord,
    at: datetime,
    existing: dict[str, ServiceUpstream],
) -> None:
    existing = dict(existing)
    for name in record.upstreams:
        if name in existing:
            existing.pop(name).observed_at = at
        else:
            session.add(
                ServiceUpstream(
                    service=service.name, upstream=name, source=service.source, observed_at=at
                )
            )
    for stale in existing.values():
        session.delete(stale)


def _load_upstreams(
    session: Session, source: str, names: Sequence[str]
) -> dict[str, dict[str, ServiceUpstream]]:
    found: dict[str, dict[str, ServiceUpstream]] = {}
    for start in range(0, len(names), _CHUNK):
        for row in session.scalars(
            select(ServiceUpstream).where(
                ServiceUpstream.source == source,
                ServiceUpstream.service.in_(names[start : start + _CHUNK]),
            )
        ):
            found.setdefault(row.service, {})[row.upstream] = row
    return found


def _mark_instance_gone(
    session: Session, service: Service, instance: Instance, at: datetime, changes: CatalogChanges
) -> None:
    session.add(
        HealthTransition(
            service=service,
            instance=instance,
            at=at,
            from_state=instance.health,
            to_state="gone",
            output="left the catalog",
        )
    )
    changes.transitions += 1
    instance.health = "gone"
    instance.gone_at = at
    changes.changed_services.add(service.name)


def _mark_service_gone(
    session: Session, service: Service, at: datetime, changes: CatalogChanges
) -> None:
    for instance in service.instances:
        if instance.gone_at is None:
            _mark_instance_gone(session, service, instance, at, changes)
    service.gone_at = at
    service.changed_at = at
    service.health = "unknown"
    service.health_rank = GONE_RANK
    service.n_total = service.n_passing = service.n_warning = 0
    service.n_critical = service.n_maintenance = 0
    changes.changed_services.add(service.name)


def _set_if_changed(obj, attr: str, value, changes: CatalogChanges, service_name: str) -> None:
    if getattr(obj, attr) != value:
        setattr(obj, attr, value)
        changes.changed_services.add(service_name)
