"""Conditions a runbook step waits for (`wait_for`) or requires (`check`), by name.

Each reads the store, which the collectors keep current while Quarterdeck serves; a condition
is one target's question ("has this instance no push connections left?"). Another domain adds
one with `register_condition`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.actions.instances import push_connections_of
from app.models import Instance, Service
from app.queries.balancers import lb_rows_by_instance

HEALTH_STATES = ("passing", "warning", "critical", "maintenance", "unknown")


@dataclass(frozen=True)
class Verdict:
    """Whether the condition holds, and what was read to say so."""

    holds: bool
    detail: str


@dataclass(frozen=True)
class Condition:
    """A named question about a target; `evaluate(db, service, instance, params, now)`."""

    name: str
    description: str
    evaluate: Callable[[Session, str, str | None, Mapping[str, Any], datetime], Verdict]
    check_params: Callable[[Mapping[str, Any]], str | None]
    needs_instance: bool = True


CONDITIONS: dict[str, Condition] = {}


def register_condition(condition: Condition) -> None:
    """Make a condition usable in runbook files by its name."""
    CONDITIONS[condition.name] = condition


def _number_param(key: str, default: float, minimum: float = 0):
    def check(params: Mapping[str, Any]) -> str | None:
        unknown = sorted(set(params) - {key})
        if unknown:
            return f"unknown parameter '{unknown[0]}' (this condition takes {key})"
        value = params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            return f"{key} must be a number of at least {minimum:g}"
        return None

    return check


def _no_push_connections(db, service, instance, params, now) -> Verdict:
    members = lb_rows_by_instance(db, service, {}, now).get(instance or "", [])
    connections = push_connections_of(db, service, instance or "", members)
    at_most = float(params.get("at_most", 0))
    if connections is None:
        return Verdict(True, "no balancer or gauge counts connections of it")
    return Verdict(
        connections <= at_most, f"{connections:g} push connections (at most {at_most:g})"
    )


def _health_of(db, service: str) -> list[tuple[str, str, bool]]:
    return db.execute(
        select(Instance.source_id, Instance.health, Instance.maintenance)
        .join(Service, Service.id == Instance.service_id)
        .where(Service.name == service, Instance.gone_at.is_(None))
        .order_by(Instance.source_id)
    ).all()


def _other_instances_healthy(db, service, instance, params, now) -> Verdict:
    wanted = int(params.get("at_least", 1))
    others = [
        r.source_id
        for r in _health_of(db, service)
        if r.source_id != instance and r.health == "passing" and not r.maintenance
    ]
    listed = ", ".join(others) or "none"
    return Verdict(len(others) >= wanted, f"{len(others)} other passing (want {wanted}): {listed}")


def _instance_health(db, service, instance, params, now) -> Verdict:
    wanted = params["is"]
    for row in _health_of(db, service):
        if row.source_id == instance:
            health = "maintenance" if row.maintenance else row.health
            return Verdict(health == wanted, f"{service}/{instance} is {health} (want {wanted})")
    return Verdict(False, f"{service}/{instance} is not in the catalog")


def _check_health_params(params: Mapping[str, Any]) -> str | None:
    unknown = sorted(set(params) - {"is"})
    if unknown:
        return f"unknown parameter '{unknown[0]}' (this condition takes is)"
    if params.get("is") not in HEALTH_STATES:
        return f"is must be one of {', '.join(HEALTH_STATES)}"
    return None


register_condition(
    Condition(
        "no_push_connections",
        "the target instance holds at most `at_most` (0) push connections",
        _no_push_connections,
        _number_param("at_most", 0),
    )
)
register_condition(
    Condition(
        "other_instances_healthy",
        "at least `at_least` (1) other instances of the service are passing",
        _other_instances_healthy,
        _number_param("at_least", 1, minimum=1),
        needs_instance=False,
    )
)
register_condition(
    Condition(
        "instance_health",
        "the target instance's health is `is` (passing, critical, maintenance ...)",
        _instance_health,
        _check_health_params,
    )
)
