"""Turn Consul's /v1/health/service entries into Quarterdeck's records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collectors.base import CheckRecord, InstanceRecord, SourceUnavailable

MAINTENANCE_SERVICE_PREFIX = "_service_maintenance:"
MAINTENANCE_NODE = "_node_maintenance"


def parse_instance(name: str, item: Any) -> tuple[InstanceRecord, dict]:
    """Parse one /v1/health/service entry."""
    try:
        node = item["Node"]
        service = item["Service"]
        node_name = str(node["Node"])
        service_id = str(service["ID"])
        checks = item.get("Checks") or []
    except (KeyError, TypeError) as exc:
        raise SourceUnavailable(f"Consul sent an entry without {exc} for service {name!r}") from exc
    tags = tuple(str(t) for t in (service.get("Tags") or []))
    meta = {str(k): str(v) for k, v in (service.get("Meta") or {}).items()}
    node_meta = {str(k): str(v) for k, v in (node.get("Meta") or {}).items()}
    try:
        check_records = tuple(_check(c) for c in checks)
        port = int(service.get("Port") or 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceUnavailable(f"Consul sent a malformed check or port for {name!r}") from exc
    return (
        InstanceRecord(
            id=service_id,
            node=node_name,
            address=str(service.get("Address") or node.get("Address") or ""),
            port=port,
            tags=tags,
            meta=meta,
            version=_version(meta, tags),
            checks=check_records,
            node_meta=node_meta,
        ),
        service,
    )


def check_kind(check_id: str, service_id: str) -> str:
    """maintenance (Consul's faux maintenance checks), node (no service) or service."""
    if check_id.startswith(MAINTENANCE_SERVICE_PREFIX) or check_id == MAINTENANCE_NODE:
        return "maintenance"
    return "service" if service_id else "node"


def _check(item: dict) -> CheckRecord:
    check_id = str(item["CheckID"])
    kind = check_kind(check_id, str(item.get("ServiceID") or ""))
    return CheckRecord(
        check_id=check_id,
        name=str(item.get("Name") or check_id),
        status=str(item["Status"]),
        output=str(item.get("Output") or ""),
        notes=str(item.get("Notes") or ""),
        kind=kind,
    )


def _version(meta: dict[str, str], tags: Iterable[str]) -> str | None:
    """Consul convention: `Meta.version`, else a `version=` tag."""
    if meta.get("version"):
        return meta["version"]
    for tag in tags:
        if tag.startswith("version="):
            return tag.split("=", 1)[1] or None
    return None


def proxy_destinations(items: list[dict] | None) -> set[str]:
    """The services the connect-proxy instances in health entries front."""
    names = set()
    for item in items or []:
        service = item.get("Service") if isinstance(item, dict) else None
        if isinstance(service, dict) and service.get("Kind") == "connect-proxy":
            destination = (service.get("Proxy") or {}).get("DestinationServiceName")
            if destination:
                names.add(str(destination))
    return names


def upstream_names(proxy: dict) -> set[str]:
    names = set()
    for upstream in proxy.get("Upstreams") or []:
        if not isinstance(upstream, dict):
            continue
        kind = upstream.get("DestinationType") or "service"
        if kind == "service" and upstream.get("DestinationName"):
            names.add(str(upstream["DestinationName"]))
    return names


def service_meta(instances: list[InstanceRecord]) -> dict[str, str]:
    """Service-level meta: keys every instance agrees on (owner, docs, runbook ...)."""
    if not instances:
        return {}
    common = dict(instances[0].meta)
    for instance in instances[1:]:
        for key in list(common):
            if instance.meta.get(key) != common[key]:
                del common[key]
    return common
