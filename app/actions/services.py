"""Service-wide actions: degrade / restore, canary step and abort, roll back (DESIGN §6, §7).

A degrade writes the switch `quarterdeck/degrade/<service>`; a rollback moves traffic from the
bad version's servers to the previous version's and writes `quarterdeck/releases/<service>`
back; a canary shifts a share of traffic between two versions' servers by weight. Versions are
what the catalog keeps of each instance (`Service.Meta.version`, else a `version=` tag).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.actions.instances import PlannedAction
from app.actions.params import PARAMETERS
from app.actions.sources import CONSUL_SOURCE
from app.actions.steps import ActionRefused, Adapter, Step, StepFailed
from app.models import Instance, Service
from app.queries.balancers import lb_rows_by_instance
from app.queries.sources import iso

SERVICE_ACTIONS = ("degrade", "restore", "canary", "rollback")
DEGRADE_PREFIX = "quarterdeck/degrade/"
RELEASES_PREFIX = "quarterdeck/releases/"
DEFAULT_DEGRADE_S = 3600
MAX_DEGRADE_S = 7 * 86400
HISTORY_KEPT = 50
# HAProxy `set server ... weight` takes 0 to 256.
MAX_WEIGHT = 256


def parse_service_params(action: str, params: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Validate a service action's params; raise ActionRefused(422) naming the field."""
    unknown = sorted(set(params) - set(PARAMETERS[action]))
    if unknown:
        raise ActionRefused(422, "invalid", f"params.{unknown[0]} is not a parameter of {action}")
    clean: dict[str, Any] = {}
    if "silence" in params:
        clean["silence"] = _boolean(params, "silence")
    if "weight" in params:
        clean["weight"] = _whole(params, "weight", 0, MAX_WEIGHT)
    if action == "degrade":
        level = params.get("level", "degraded")
        if not isinstance(level, str) or not 0 < len(level.strip()) <= 100:
            raise ActionRefused(422, "invalid", "params.level must be 1 to 100 characters")
        features = params.get("features_off", [])
        if not isinstance(features, list) or not all(
            isinstance(f, str) and 0 < len(f) <= 100 for f in features
        ):
            raise ActionRefused(422, "invalid", "params.features_off must be a list of names")
        clean.update(level=level.strip(), features_off=sorted(set(features)))
        if "until" in params and "duration_s" in params:
            raise ActionRefused(422, "invalid", "params: give until or duration_s, not both")
        if "until" in params:
            until_at = _time(params["until"])
            if until_at <= now:
                raise ActionRefused(422, "invalid", "params.until must be in the future")
            if until_at - now > timedelta(seconds=MAX_DEGRADE_S):
                raise ActionRefused(422, "invalid", "params.until must be within 7 days")
            clean["until"] = iso(until_at)
        else:
            seconds = (
                _whole(params, "duration_s", 60, MAX_DEGRADE_S)
                if "duration_s" in params
                else DEFAULT_DEGRADE_S
            )
            clean["until"] = iso(now + timedelta(seconds=seconds))
    if action == "canary":
        for name in ("from", "to"):
            value = params.get(name)
            if not isinstance(value, str) or not 0 < len(value) <= 100:
                raise ActionRefused(422, "invalid", f"params.{name} must be a version")
            clean[name] = value
        if clean["from"] == clean["to"]:
            raise ActionRefused(422, "invalid", "params.from and params.to must differ")
        abort = _boolean(params, "abort") if "abort" in params else False
        # percent 0 is what an abort means: the parsed params of an abort parse again.
        if abort and params.get("percent", 0) != 0:
            raise ActionRefused(422, "invalid", "params: an abort takes no percent")
        if not abort and "percent" not in params:
            raise ActionRefused(422, "invalid", "params.percent is needed (or abort=true)")
        clean["abort"] = abort
        clean["percent"] = 0 if abort else _whole(params, "percent", 0, 100)
    return clean


def _boolean(params: Mapping[str, Any], name: str) -> bool:
    if not isinstance(params[name], bool):
        raise ActionRefused(422, "invalid", f"params.{name} must be true or false")
    return params[name]


def _whole(params: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = params[name]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ActionRefused(422, "invalid", f"params.{name} must be a whole number {low}-{high}")
    return value


def _time(raw: Any) -> datetime:
    value = None
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            value = None
    if value is None or value.tzinfo is None:
        raise ActionRefused(422, "invalid", "params.until must be an RFC 3339 time with a zone")
    return value


def plan_service_action(
    db: Session,
    adapters: Mapping[str, Adapter],
    action: str,
    service: str,
    params: Mapping[str, Any],
    reason: str,
    actor: str,
    now: datetime,
) -> PlannedAction:
    """Plan a service-wide action; raise ActionRefused when it cannot be done."""
    instances = _instances(db, service)
    members = lb_rows_by_instance(db, service, {}, now)
    if not instances and not members:
        raise ActionRefused(422, "unknown_target", f"target: no service {service!r}")
    if action in ("degrade", "restore"):
        steps = _weight_steps(adapters, members, params.get("weight"))
        value = None
        if action == "degrade":
            value = {
                "level": params["level"],
                "features_off": params["features_off"],
                "reason": reason,
                "until": params["until"],
                "by": actor,
            }
        steps.append(_kv_step(adapters, DEGRADE_PREFIX + service, value))
    elif action == "canary":
        steps = _canary_steps(adapters, instances, members, params)
    else:
        steps, release = _rollback_steps(adapters, instances, members, service, actor, now)
    versions: dict[str, list[str]] = {}
    for row in instances:
        versions.setdefault(row.version or "unknown", []).append(row.source_id)
    blast = {
        "instances": len(instances),
        "versions": versions,
        "serving": sorted(r.source_id for r in instances if _serving(r)),
        "balancer_members": sum(len(m) for m in members.values()),
    }
    if action == "rollback":
        blast["release"] = release
    return PlannedAction(action, service, steps, blast)


def _serving(row: Instance) -> bool:
    return row.health == "passing" and not row.maintenance


def _instances(db: Session, service: str) -> list[Instance]:
    return list(
        db.scalars(
            select(Instance)
            .join(Service, Service.id == Instance.service_id)
            .where(Service.name == service, Instance.gone_at.is_(None))
            .order_by(Instance.source_id)
        )
    )


def _consul(adapters: Mapping[str, Adapter]) -> Adapter:
    adapter = adapters.get(CONSUL_SOURCE)
    if adapter is None:
        raise ActionRefused(
            422, "source_missing", "this action writes Consul KV: configure [consul]"
        )
    return adapter


def _kv_step(adapters: Mapping[str, Adapter], key: str, value: Any) -> Step:
    adapter = _consul(adapters)
    target, change = {"key": key}, {"value": value}
    return Step(adapter.name, adapter.kind, target, change, adapter.describe(target, change))


def _member_step(adapters: Mapping[str, Adapter], member: Mapping[str, Any], change) -> Step:
    adapter = adapters.get(member["balancer"])
    if adapter is None:
        raise ActionRefused(
            422,
            "source_read_only",
            f"balancer {member['balancer']} fronts {member['backend']}/{member['server']} but "
            "Quarterdeck cannot change it (HAProxy needs runtime, nginx needs upstream_conf)",
        )
    if adapter.kind == "haproxy":
        target = {"backend": member["backend"], "server": member["server"]}
    else:
        target = {"upstream": member["backend"], "server": member["server"]}
    return Step(adapter.name, adapter.kind, target, change, adapter.describe(target, change))


def _weight_steps(adapters, members: Mapping[str, list[dict]], weight: int | None) -> list[Step]:
    """A degrade's optional HAProxy weight change, on every HAProxy server of the service."""
    if weight is None:
        return []
    steps = [
        _member_step(adapters, m, {"weight": weight})
        for instance_members in members.values()
        for m in instance_members
        if m["kind"] == "haproxy"
    ]
    if not steps:
        raise ActionRefused(
            422, "nothing_to_change", "params.weight: no HAProxy server of this service"
        )
    return steps


def canary_weights(percent: int, old_servers: int, new_servers: int) -> tuple[int, int]:
    """Per-server weights (old, new) that give the new version `percent` of the requests."""
    old, new = (100 - percent) * new_servers, percent * old_servers
    divisor = math.gcd(old, new) or 1
    old, new = old // divisor, new // divisor
    if max(old, new) > MAX_WEIGHT:
        scale = MAX_WEIGHT / max(old, new)
        old = max(1, round(old * scale)) if old else 0
        new = max(1, round(new * scale)) if new else 0
    return old, new


def _balancer_change(kind: str, weight: int) -> dict[str, Any]:
    # nginx has no weight 0: `down` takes a server out; HAProxy weight 0 takes no new requests.
    if kind == "nginx":
        return {"state": "down"} if weight == 0 else {"state": "ready", "weight": weight}
    return {"state": "ready", "weight": weight}


def _by_group(instances: list[Instance], members: Mapping[str, list[dict]]):
    """Members per (balancer, backend), each with the version of its instance."""
    version_of = {row.source_id: row.version for row in instances}
    groups: dict[tuple[str, str], list[tuple[str | None, dict]]] = {}
    for instance_id, rows in members.items():
        for member in rows:
            key = (member["balancer"], member["backend"])
            groups.setdefault(key, []).append((version_of.get(instance_id), member))
    return groups


def _canary_steps(adapters, instances, members, params) -> list[Step]:
    versions = {row.version for row in instances}
    for name in ("from", "to"):
        if params[name] not in versions:
            known = ", ".join(sorted(v for v in versions if v)) or "none"
            raise ActionRefused(
                422, "unknown_version", f"params.{name}: no instance runs {params[name]!r} "
                f"(versions: {known})"
            )  # fmt: skip
    steps: list[Step] = []
    for _, rows in sorted(_by_group(instances, members).items()):
        old = [m for v, m in rows if v == params["from"]]
        new = [m for v, m in rows if v == params["to"]]
        if not old or not new:
            continue
        w_old, w_new = canary_weights(params["percent"], len(old), len(new))
        # The canary first when it takes traffic, last when an abort takes its share away.
        order = [(new, w_new), (old, w_old)]
        if not params["percent"]:
            order.reverse()
        for group, weight in order:
            for member in group:
                change = _balancer_change(member["kind"], weight)
                steps.append(_member_step(adapters, member, change))
    if not steps:
        raise ActionRefused(
            422,
            "nothing_to_change",
            f"no balancer fronts both {params['from']} and {params['to']} servers",
        )
    return steps


def _rollback_steps(adapters, instances, members, service: str, actor: str, now):
    """The rollback's steps, and the release it goes {"from": active, "to": previous}."""
    consul = _consul(adapters)
    key = RELEASES_PREFIX + service
    try:
        current = consul.read({"key": key})["value"]
    except StepFailed as exc:
        raise ActionRefused(502, "source_error", f"cannot read {key}: {exc.reason}") from None
    if not isinstance(current, dict) or not current.get("active") or not current.get("previous"):
        raise ActionRefused(
            422,
            "no_previous_release",
            f'{key} must hold {{"active": ..., "previous": ...}} to roll back; '
            f"it holds {current!r}",
        )
    bad, good = str(current["active"]), str(current["previous"])
    steps: list[Step] = []
    drains: list[Step] = []
    for _, rows in sorted(_by_group(instances, members).items()):
        for version, member in rows:
            if version == good:
                steps.append(_member_step(adapters, member, _balancer_change(member["kind"], 1)))
            elif version == bad:
                change = {"state": "drain"} if member["kind"] == "haproxy" else {"state": "down"}
                drains.append(_member_step(adapters, member, change))
    if drains and not steps:
        raise ActionRefused(
            409,
            "no_previous_servers",
            f"no balancer server runs {good}: rolling back would leave {service} with none",
        )
    history = list(current.get("history") or [])
    history.append(
        {"version": good, "from": bad, "at": iso(now), "by": actor, "action": "rollback"}
    )
    value = {
        **current,
        "active": good,
        "previous": bad,
        "history": history[-HISTORY_KEPT:],
    }
    return [*steps, *drains, _kv_step(adapters, key, value)], {"from": bad, "to": good}
