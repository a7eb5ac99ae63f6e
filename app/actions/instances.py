"""Drain and ready an instance: on every balancer that has it, and in Consul (DESIGN §7)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.actions.sources import CONSUL_SOURCE
from app.actions.steps import ActionRefused, Adapter, Step
from app.models import Instance, PushGauge, Service
from app.queries.balancers import lb_rows_by_instance

INSTANCE_ACTIONS = ("drain", "ready")
# What each action asks of each kind of source.
_WANTED = {
    "drain": {"haproxy": {"state": "drain"}, "nginx": {"state": "down"}},
    "ready": {"haproxy": {"state": "ready"}, "nginx": {"state": "ready"}},
}


@dataclass
class PlannedAction:
    """An action's target, its steps (in order) and what it leaves behind."""

    action: str
    target: str
    steps: list[Step]
    blast_radius: dict[str, Any] = field(default_factory=dict)


def plan_instance_action(
    db: Session,
    adapters: Mapping[str, Adapter],
    action: str,
    service: str,
    instance_id: str,
    params: Mapping[str, Any],
    reason: str,
    now: datetime,
) -> PlannedAction:
    """Plan a drain or a ready of one instance; raise ActionRefused when it cannot be done."""
    instance = _find_instance(db, service, instance_id)
    steps: list[Step] = []
    members = lb_rows_by_instance(db, service, {}, now).get(instance_id, [])
    for member in members:
        adapter = adapters.get(member["balancer"])
        if adapter is None:
            raise ActionRefused(
                422,
                "source_read_only",
                f"balancer {member['balancer']} fronts {service}/{instance_id} but Quarterdeck "
                "cannot change it (HAProxy needs runtime, nginx needs upstream_conf)",
            )
        if adapter.kind == "haproxy":
            target = {"backend": member["backend"], "server": member["server"]}
        else:
            target = {"upstream": member["backend"], "server": member["server"]}
        change = dict(_WANTED[action][adapter.kind])
        steps.append(_step(adapter, target, change))
    in_consul = instance is not None and instance.source == CONSUL_SOURCE
    if in_consul and CONSUL_SOURCE in adapters:
        target = {"service": service, "service_id": instance_id, "node": instance.node}
        change: dict[str, Any] = {"maintenance": action == "drain"}
        if action == "drain":
            change["reason"] = reason or "drained with Quarterdeck"
        steps.append(_step(adapters[CONSUL_SOURCE], target, change))
    if instance is None and not members:
        raise ActionRefused(
            422, "unknown_target", f"target: no instance {instance_id!r} of service {service!r}"
        )
    if not steps:
        raise ActionRefused(
            422,
            "nothing_to_change",
            f"target: no balancer or Consul that Quarterdeck can change holds "
            f"{service}/{instance_id}",
        )
    blast = blast_radius(db, service, instance_id, members)
    last = action == "drain" and blast["target_healthy"] and not blast["serving_after"]
    if last and not params.get("force"):
        raise ActionRefused(
            409,
            "last_healthy_instance",
            f"{service}/{instance_id} is the last healthy instance of {service}: draining "
            "it leaves none serving; send params.force=true to drain it anyway",
        )
    return PlannedAction(action, f"{service}/{instance_id}", steps, blast)


def _step(adapter: Adapter, target: dict[str, Any], change: dict[str, Any]) -> Step:
    return Step(adapter.name, adapter.kind, target, change, adapter.describe(target, change))


def _find_instance(db: Session, service: str, instance_id: str) -> Instance | None:
    rows = db.scalars(
        select(Instance)
        .join(Service, Service.id == Instance.service_id)
        .where(
            Service.name == service,
            Instance.source_id == instance_id,
            Instance.gone_at.is_(None),
        )
    ).all()
    if len(rows) > 1:
        nodes = ", ".join(sorted(r.node for r in rows))
        raise ActionRefused(
            422,
            "ambiguous_target",
            f"target: {service}/{instance_id} is on several nodes ({nodes})",
        )
    return rows[0] if rows else None


def blast_radius(
    db: Session, service: str, instance_id: str, members: list[dict[str, Any]]
) -> dict[str, Any]:
    """Say what the action leaves: instances still serving, push connections that will move."""
    rows = db.execute(
        select(Instance.source_id, Instance.health, Instance.maintenance)
        .join(Service, Service.id == Instance.service_id)
        .where(Service.name == service, Instance.gone_at.is_(None))
        .order_by(Instance.source_id)
    ).all()
    serving = [r.source_id for r in rows if r.health == "passing" and not r.maintenance]
    connections = push_connections_of(db, service, instance_id, members)
    return {
        "target_healthy": instance_id in serving,
        "serving_after": [i for i in serving if i != instance_id],
        "instances": len(rows),
        "push_connections": connections,
        "push_note": (
            "open connections stay until they close (a HAProxy drain keeps them, old nginx "
            "workers finish them); they reconnect to the instances left serving"
            if connections
            else None
        ),
    }


def push_connections_of(
    db: Session, service: str, instance_id: str, members: list[dict[str, Any]]
) -> float | None:
    """The instance's connections the way the push view counts them: HAProxy first, else the gauge.

    Only this instance is read (the whole push view costs far more than a plan may take).
    """
    counted = [
        m["sessions"] for m in members if m["kind"] == "haproxy" and m["sessions"] is not None
    ]
    if counted:
        return float(sum(counted))
    gauge = db.scalar(
        select(PushGauge.connections).where(
            PushGauge.service == service, PushGauge.instance == instance_id
        )
    )
    return gauge
