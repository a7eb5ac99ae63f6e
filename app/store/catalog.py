"""Write catalog updates: upsert services and instances, roll up health, record transitions.

Fleet-sized updates (thousands of instances) go through Core statements in bulk: one read of
the current rows, a diff in Python, then one executemany per table and kind of change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.models import Balancer, Check, HealthTransition, Instance, Service, ServiceUpstream
from app.store.bulk import insert_columns, insert_columns_keyed, insert_rows, update_rows
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord

# Worst first: the order a person on call wants to read them in.
HEALTH_RANK = {"critical": 4, "warning": 3, "maintenance": 2, "unknown": 1, "passing": 0}
GONE_RANK = -1
CHECK_RANK = {"critical": 3, "warning": 2, "passing": 1}
_CHUNK = 500

services_t = Service.__table__
instances_t = Instance.__table__
checks_t = Check.__table__
transitions_t = HealthTransition.__table__
upstreams_t = ServiceUpstream.__table__

_INSTANCE_FIELDS = ("address", "port", "tags", "meta", "node_meta", "version")
_CHECK_FIELDS = ("name", "kind", "status", "output", "notes")


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


class _Batch:
    """The rows one update will write, collected before any statement runs."""

    def __init__(self) -> None:
        self.service_updates: list[dict] = []
        # (service id, record, its state, or None to work it out)
        self.instance_inserts: list[tuple[int, InstanceRecord, str | None]] = []
        self.instance_updates: list[dict] = []
        self.check_inserts: list[dict] = []
        self.check_updates: list[dict] = []
        self.check_deletes: list[int] = []
        self.transitions: list[dict] = []
        self.upstream_inserts: list[dict] = []
        self.upstream_deletes: list[int] = []


def apply_catalog_update(session: Session, source: str, upd: CatalogUpdate) -> CatalogChanges:
    """Upsert the services of one update and record every state change; flush, don't commit."""
    changes = CatalogChanges()
    at = upd.observed_at
    session.flush()
    names = [record.name for record in upd.services]
    services = _load_services(session, names)
    batch = _Batch()
    new_records = [r for r in upd.services if r.name not in services]
    if new_records:
        # Everything about a new service is new: no diff, just inserts.
        _insert_services(session, source, new_records, at, services)
        for record in new_records:
            _queue_new_service(source, services[record.name], record, at, batch, changes)
    # A service made of a balancer's unmatched members yields to a catalog source that lists
    # it: the members then match that source's instances (app/store/balancers.py).
    balancers = _balancer_names(session)
    yielding = balancers if source not in balancers else set()
    owned = {
        r.name: r
        for r in upd.services
        if r.name not in changes.changed_services
        and (
            services[r.name]["source"] == source
            or services[r.name]["gone_at"] is not None
            or services[r.name]["source"] in yielding
        )
    }
    taken_over = [services[n]["id"] for n in owned if services[n]["source"] in yielding]
    if taken_over:
        # The balancer's own members of it are the same servers, now matched to this source's
        # instances: they go without a trace rather than "leave the catalog" as noise.
        session.execute(
            delete(instances_t).where(
                instances_t.c.service_id.in_(taken_over), instances_t.c.source.in_(yielding)
            )
        )
    service_ids = [services[name]["id"] for name in owned]
    instances = _load_instances(session, service_ids)
    checks = _load_checks(session, [i["id"] for rows in instances.values() for i in rows.values()])
    upstreams = _load_upstreams(session, source, list(owned))
    for name, record in owned.items():
        _diff_service(
            source,
            services[name],
            record,
            instances.get(services[name]["id"], {}),
            checks,
            upstreams.get(name, {}),
            at,
            batch,
            changes,
        )
    gone_names = set(upd.removed)
    if upd.complete:
        gone_names |= _live_names_of_source(session, source) - set(names)
    if gone_names:
        _diff_gone_services(session, source, gone_names, at, batch, changes)
    _write(session, batch, source, at)
    changes.transitions = len(batch.transitions)
    return changes


def _balancer_names(session: Session) -> set[str]:
    return set(session.scalars(select(Balancer.name)))


def _chunks(values: Sequence, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _load_services(session: Session, names: Sequence[str]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for chunk in _chunks(list(names)):
        for row in session.execute(select(services_t).where(services_t.c.name.in_(chunk))):
            found[row.name] = dict(row._mapping)
    return found


def _insert_services(
    session: Session, source: str, records: Sequence[ServiceRecord], at: datetime, into: dict
) -> None:
    rows = []
    for r in records:
        states = [instance_health(i.checks, i.checked)[0] for i in r.instances]
        versions = {i.version for i in r.instances if i.version}
        rows.append(
            {
                "name": r.name,
                "_states": states,
                **_service_values(source, r, states, versions),
                "first_seen_at": at,
                "observed_at": at,
                "changed_at": at,
            }
        )
    # A plain executemany, then one read back by the unique name: RETURNING with a guaranteed
    # row order would make SQLite insert one row per statement.
    insert_columns(
        session.connection(),
        services_t,
        {c: [row[c] for row in rows] for c in rows[0] if c != "_states"} if rows else {},
    )
    by_name = {row["name"]: row for row in rows}
    for chunk in _chunks(list(by_name)):
        found = session.execute(
            select(services_t.c.id, services_t.c.name).where(services_t.c.name.in_(chunk))
        ).all()
        for new_id, name in found:
            into[name] = {**by_name[name], "id": new_id}


_INSTANCE_READ = [
    instances_t.c[name]
    for name in ("id", "service_id", "node", "source_id", "health", "maintenance")
    + ("maintenance_reason", "gone_at", *_INSTANCE_FIELDS)
]
_CHECK_READ = [checks_t.c[name] for name in ("id", "instance_id", "check_id", *_CHECK_FIELDS)]


def _load_instances(session: Session, service_ids: Sequence[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    for chunk in _chunks(list(service_ids)):
        query = select(*_INSTANCE_READ).where(instances_t.c.service_id.in_(chunk))
        for row in session.execute(query).all():
            found.setdefault(row.service_id, {})[(row.node, row.source_id)] = row._asdict()
    return found


def _load_checks(session: Session, instance_ids: Sequence[int]) -> dict[int, dict[str, dict]]:
    found: dict[int, dict[str, dict]] = {}
    for chunk in _chunks(list(instance_ids)):
        query = select(*_CHECK_READ).where(checks_t.c.instance_id.in_(chunk))
        for row in session.execute(query).all():
            found.setdefault(row.instance_id, {})[row.check_id] = row._asdict()
    return found


def _load_upstreams(
    session: Session, source: str, names: Sequence[str]
) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for chunk in _chunks(list(names)):
        for row in session.execute(
            select(upstreams_t.c.id, upstreams_t.c.service, upstreams_t.c.upstream).where(
                upstreams_t.c.source == source, upstreams_t.c.service.in_(chunk)
            )
        ):
            found.setdefault(row.service, {})[row.upstream] = row.id
    return found


def _live_names_of_source(session: Session, source: str) -> set[str]:
    return set(
        session.scalars(
            select(services_t.c.name).where(
                services_t.c.source == source, services_t.c.gone_at.is_(None)
            )
        )
    )


def _queue_new_service(
    source: str, row: dict, record: ServiceRecord, at: datetime, batch: _Batch, changes
) -> None:
    changes.services_seen += 1
    changes.instances_seen += len(record.instances)
    changes.changed_services.add(record.name)
    for inst, state in zip(record.instances, row["_states"], strict=True):
        batch.instance_inserts.append((row["id"], inst, state))
    batch.upstream_inserts.extend(
        {"service": record.name, "upstream": name, "source": source, "observed_at": at}
        for name in sorted(set(record.upstreams))
    )


def _service_values(
    source: str, record: ServiceRecord, states: list[str], versions: set[str]
) -> dict:
    """The columns of a live service row that follow from one record and its instance states."""
    health, counts = rollup(states)
    return {
        "source": source,
        "kind": record.kind,
        "tags": sorted(set(record.tags)),
        "meta": dict(record.meta),
        "versions": sorted(versions),
        "health": health,
        "health_rank": HEALTH_RANK[health],
        "n_total": counts["total"],
        "n_passing": counts["passing"],
        "n_warning": counts["warning"],
        "n_critical": counts["critical"],
        "n_maintenance": counts["maintenance"],
        "gone_at": None,
    }


def _diff_service(
    source: str,
    current: dict,
    record: ServiceRecord,
    instances: dict[tuple[str, str], dict],
    checks: dict[int, dict[str, dict]],
    upstreams: dict[str, int],
    at: datetime,
    batch: _Batch,
    changes: CatalogChanges,
) -> None:
    changes.services_seen += 1
    changed = current["gone_at"] is not None or current["source"] != source
    states: list[str] = []
    versions: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for inst in record.instances:
        changes.instances_seen += 1
        key = (inst.node, inst.id)
        seen.add(key)
        state, output = instance_health(inst.checks, inst.checked)
        states.append(state)
        if inst.version:
            versions.add(inst.version)
        row = instances.get(key)
        if row is None:
            batch.instance_inserts.append((current["id"], inst, state))
            changed = True
            continue
        changed |= _diff_instance(row, inst, state, output, checks.get(row["id"], {}), at, batch)
    for key, row in instances.items():
        if key not in seen and row["gone_at"] is None:
            _instance_gone(row, at, batch)
            changed = True
    new = _service_values(source, record, states, versions)
    health = new["health"]
    if changed or any(current[k] != v for k, v in new.items()):
        new["changed_at"] = at if health != current["health"] else current["changed_at"]
        new["observed_at"] = at
        batch.service_updates.append({"_id": current["id"], **new})
        changes.changed_services.add(record.name)
    wanted = set(record.upstreams)
    for name in wanted - upstreams.keys():
        batch.upstream_inserts.append(
            {"service": record.name, "upstream": name, "source": source, "observed_at": at}
        )
    batch.upstream_deletes.extend(i for name, i in upstreams.items() if name not in wanted)


def _diff_instance(
    row: dict,
    inst: InstanceRecord,
    state: str,
    output: str,
    checks: dict[str, dict],
    at: datetime,
    batch: _Batch,
) -> bool:
    values = {
        "address": inst.address,
        "port": inst.port,
        "tags": list(inst.tags),
        "meta": dict(inst.meta),
        "node_meta": dict(inst.node_meta),
        "version": inst.version,
    }
    maintenance = [c for c in inst.checks if c.kind == "maintenance"]
    values["maintenance"] = bool(maintenance)
    values["maintenance_reason"] = (maintenance[0].notes if maintenance else "")[:1000]
    values["health"] = state
    values["gone_at"] = None
    # Write only what differs: a fleet-wide flap then updates two columns, not ten.
    differs = {k: v for k, v in values.items() if row[k] != v}
    if row["health"] != state:
        batch.transitions.append(
            {
                "service_id": row["service_id"],
                "instance_id": row["id"],
                "at": at,
                "from_state": row["health"],
                "to_state": state,
                **_cause(inst.checks, checks, state, output),
            }
        )
    if differs:
        batch.instance_updates.append({"_id": row["id"], **differs, "observed_at": at})
    checks_changed = _diff_checks(row["id"], inst.checks, checks, at, batch)
    return bool(differs) or checks_changed


def _diff_checks(
    instance_id: int,
    records: Sequence[CheckRecord],
    current: dict[str, dict],
    at: datetime,
    batch: _Batch,
) -> bool:
    changed = False
    seen = set()
    for check in records:
        seen.add(check.check_id)
        row = current.get(check.check_id)
        if row is None:
            batch.check_inserts.append(
                {
                    "instance_id": instance_id,
                    "check_id": check.check_id,
                    "observed_at": at,
                    **{f: getattr(check, f) for f in _CHECK_FIELDS},
                }
            )
            changed = True
            continue
        differs = {f: getattr(check, f) for f in _CHECK_FIELDS if row[f] != getattr(check, f)}
        if differs:
            batch.check_updates.append({"_id": row["id"], "observed_at": at, **differs})
            changed = True
    for check_id, row in current.items():
        if check_id not in seen:
            batch.check_deletes.append(row["id"])
            changed = True
    return changed


def _cause(
    records: Sequence[CheckRecord], current: dict[str, dict], state: str, output: str
) -> dict[str, str]:
    """Name the check that moved the instance to `state`, and its output.

    Prefer a check whose own status just became `state` (on recovery that is the check that
    was failing, not the first passing one), else the worst check.
    """
    if state != "maintenance":
        for check in records:
            row = current.get(check.check_id)
            if check.status == state and (row is None or row["status"] != state):
                return {"check_id": check.check_id, "output": check.output}
    return {"check_id": _causing_check(records, state), "output": output}


def _causing_check(checks: Sequence[CheckRecord], state: str) -> str:
    for check in checks:
        if state == "maintenance" and check.kind == "maintenance":
            return check.check_id
        if state != "maintenance" and check.status == state:
            return check.check_id
    return ""


def _instance_gone(row: dict, at: datetime, batch: _Batch) -> None:
    batch.transitions.append(
        {
            "service_id": row["service_id"],
            "instance_id": row["id"],
            "at": at,
            "from_state": row["health"],
            "to_state": "gone",
            "check_id": "",
            "output": "left the catalog",
        }
    )
    batch.instance_updates.append(
        {"_id": row["id"], "health": "gone", "gone_at": at, "observed_at": at}
    )


def _diff_gone_services(
    session: Session,
    source: str,
    names: set[str],
    at: datetime,
    batch: _Batch,
    changes: CatalogChanges,
) -> None:
    services = {
        name: row
        for name, row in _load_services(session, list(names)).items()
        if row["source"] == source and row["gone_at"] is None
    }
    instances = _load_instances(session, [row["id"] for row in services.values()])
    for name, row in services.items():
        for inst in instances.get(row["id"], {}).values():
            if inst["gone_at"] is None:
                _instance_gone(inst, at, batch)
        batch.service_updates.append(
            {
                "_id": row["id"],
                **{k: row[k] for k in ("source", "kind", "tags", "meta", "versions")},
                "health": "unknown",
                "health_rank": GONE_RANK,
                "n_total": 0,
                "n_passing": 0,
                "n_warning": 0,
                "n_critical": 0,
                "n_maintenance": 0,
                "gone_at": at,
                "changed_at": at,
                "observed_at": at,
            }
        )
        changes.changed_services.add(name)


def _write(session: Session, batch: _Batch, source: str, at: datetime) -> None:
    if batch.instance_inserts:
        _insert_instances(session, batch, source, at)
    if batch.service_updates:
        _update_many(session, services_t, batch.service_updates)
    if batch.instance_updates:
        _update_many(session, instances_t, batch.instance_updates)
    if batch.check_deletes:
        for chunk in _chunks(batch.check_deletes):
            session.execute(delete(checks_t).where(checks_t.c.id.in_(chunk)))
    if batch.check_updates:
        _update_many(session, checks_t, batch.check_updates)
    if batch.check_inserts:
        insert_rows(session.connection(), checks_t, batch.check_inserts)
    if batch.transitions:
        insert_rows(session.connection(), transitions_t, batch.transitions)
    if batch.upstream_deletes:
        session.execute(delete(upstreams_t).where(upstreams_t.c.id.in_(batch.upstream_deletes)))
    if batch.upstream_inserts:
        session.execute(insert(upstreams_t), batch.upstream_inserts)


def _insert_instances(session: Session, batch: _Batch, source: str, at: datetime) -> None:
    """Insert new instances and their checks, column by column (fleet-sized on a first pass)."""
    inserts = batch.instance_inserts
    maintenance = [
        next((c for c in i.checks if c.kind == "maintenance"), None) for _, i, _ in inserts
    ]
    count = len(inserts)
    insert_columns(
        session.connection(),
        instances_t,
        {
            "service_id": [service_id for service_id, _, _ in inserts],
            "source": [source] * count,
            "source_id": [i.id for _, i, _ in inserts],
            "node": [i.node for _, i, _ in inserts],
            "address": [i.address for _, i, _ in inserts],
            "port": [i.port for _, i, _ in inserts],
            # Tuples are hashable, so a tag set many instances share is encoded once.
            "tags": [tuple(i.tags) for _, i, _ in inserts],
            "meta": [dict(i.meta) for _, i, _ in inserts],
            "node_meta": [dict(i.node_meta) for _, i, _ in inserts],
            "version": [i.version for _, i, _ in inserts],
            "health": [state or instance_health(i.checks, i.checked)[0] for _, i, state in inserts],
            "maintenance": [m is not None for m in maintenance],
            "maintenance_reason": [(m.notes if m else "")[:1000] for m in maintenance],
            "observed_at": [at] * count,
            "first_seen_at": [at] * count,
            "gone_at": [None] * count,
        },
    )
    checks = [(i, c) for _, i, _ in inserts for c in i.checks]
    insert_columns_keyed(
        session.connection(),
        checks_t,
        {
            "check_id": [c.check_id for _, c in checks],
            "observed_at": [at] * len(checks),
            **{f: [getattr(c, f) for _, c in checks] for f in _CHECK_FIELDS},
        },
        "instance_id",
        instances_t,
        {
            "source": [source] * len(checks),
            "node": [i.node for i, _ in checks],
            "source_id": [i.id for i, _ in checks],
        },
    )


def _update_many(session: Session, table, rows: list[dict]) -> None:
    """Run one executemany UPDATE per distinct column set."""
    by_columns: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        by_columns.setdefault(tuple(row), []).append(row)
    for group in by_columns.values():
        update_rows(session.connection(), table, group)
