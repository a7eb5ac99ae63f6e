"""Service and check definitions read from registration bodies, validated as Consul does.

agent/structs: ServiceDefinition and NodeService (ValidateWeights, ValidateMetadata, the
Connect proxy rules of NodeService.Validate), CheckType (CheckType.Validate, the agent's
check IDs and names) and HealthCheck (catalog_endpoint.go checkPreApply). Every refusal is a
400 with Consul's words.
"""

from __future__ import annotations

import re
from typing import Any

from demo.consul.bodies import Body, format_go_duration
from demo.consul.catalog import CRITICAL, SERVICE_MAINT_PREFIX, STATUSES, Service
from demo.consul.protocol import HTTPError

# agent/structs: metadata limits (ValidateMetadata).
META_MAX_PAIRS, META_KEY_MAX, META_VALUE_MAX = 64, 128, 512
META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")
RESERVED_META_PREFIX = "consul-"
BAD_STATUS = "Status for checks must 'passing', 'warning', 'critical'"


def service_from(body: Body, node: str, name: str, struct: str) -> Service:
    """A service instance from a ServiceDefinition or NodeService body, validated."""
    weights = {"Passing": 1, "Warning": 1}
    weights_body = body.object("Weights", "Weights")
    if weights_body is not None:
        weights = {
            "Passing": weights_body.integer("Passing"),
            "Warning": weights_body.integer("Warning"),
        }
        # agent/structs ValidateWeights.
        if weights["Passing"] < 1:
            raise HTTPError(400, "Invalid Weights: Passing must be greater than 0")
        if weights["Warning"] < 0:
            raise HTTPError(400, "Invalid Weights: Warning must be greater or equal than 0")
    meta = body.string_map("Meta")
    validate_meta(meta, "Invalid Service Meta")
    service = Service(
        node=node,
        id=body.string("ID") or name,
        name=name,
        kind=body.string("Kind"),
        address=body.string("Address"),
        port=body.integer("Port"),
        tags=body.strings("Tags"),
        meta=meta,
        weights=weights,
        proxy=body.mapping("Proxy"),
        enable_tag_override=body.boolean("EnableTagOverride"),
        connect=body.mapping("Connect"),
        tagged_addresses=body.mapping("TaggedAddresses"),
    )
    if not 0 <= service.port <= 65535:
        raise HTTPError(400, f"Invalid port {service.port}: must be 0-65535")
    if service.kind == "connect-proxy":
        # agent/structs NodeService.Validate for a Connect proxy.
        if not proxy_destination(service):
            raise HTTPError(400, "Validation failed: Proxy.DestinationServiceName must be set")
        if not service.port and not body.string("SocketPath"):
            raise HTTPError(
                400, "Validation failed: Port or SocketPath must be set for a Connect proxy"
            )
    return service


def proxy_destination(service: Service) -> str:
    """A connect-proxy's Proxy.DestinationServiceName."""
    return str((service.proxy or {}).get("DestinationServiceName") or "")


def validate_meta(meta: dict[str, str], prefix: str) -> None:
    """Refuse metadata Consul refuses (a 400 starting with prefix)."""
    # agent/structs ValidateMetadata (the agent adds the "consul-" reservation).
    if len(meta) > META_MAX_PAIRS:
        raise HTTPError(
            400,
            f"{prefix}: Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs",
        )
    for key, value in meta.items():
        if not key:
            reason = "Key cannot be blank"
        elif len(key) > META_KEY_MAX:
            reason = f"Key is too long (limit: {META_KEY_MAX} characters)"
        elif not META_KEY.match(key):
            reason = "Key contains invalid characters"
        elif key.startswith(RESERVED_META_PREFIX):
            reason = f"Key prefix '{RESERVED_META_PREFIX}' is reserved for internal use"
        elif len(value) > META_VALUE_MAX:
            reason = f"Value is too long (limit: {META_VALUE_MAX} characters)"
        else:
            continue
        raise HTTPError(400, f"{prefix}: {reason}: {key[:40]!r}")


def check_definitions(body: Body) -> list[Body]:
    """The CheckTypes of a service definition."""
    # structs.ServiceDefinition.CheckTypes: Check unless it is empty, then Checks.
    single = body.object("Check", "CheckType")
    checks = [single] if single is not None and not single.is_empty() else []
    return checks + body.objects("Checks", "CheckType")


def agent_check(check: Body, service: Service, number: int, total: int) -> dict[str, Any]:
    """A CheckType of a service definition as the catalog check the agent registers."""
    for field in ("Args", "ScriptArgs"):
        if check.has(field):
            raise HTTPError(
                400,
                "Invalid check: Scripts are disabled on this agent; to enable, configure "
                "'enable_script_checks' or 'enable_local_script_checks' to true",
            )
    for field in ("GRPC", "DockerContainerID", "H2PING", "UDP", "OSService", "AliasService"):
        if check.has(field):
            raise HTTPError(
                400, f"Invalid check: the Consul double runs TTL, HTTP and TCP checks, not {field}"
            )
    interval, ttl, timeout = (
        check.duration("Interval"),
        check.duration("TTL"),
        check.duration("Timeout"),
    )
    http, tcp = check.string("HTTP"), check.string("TCP")
    # agent/structs CheckType.Validate.
    if interval > 0 and ttl > 0:
        raise HTTPError(400, "Invalid check: Interval and TTL cannot both be specified")
    if (http or tcp) and interval <= 0:
        raise HTTPError(
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or gRPC checks",
        )
    if not (http or tcp) and ttl <= 0:
        raise HTTPError(400, "Invalid check: TTL must be > 0 for TTL checks")
    if http and tcp:
        raise HTTPError(400, "Invalid check: a check is either HTTP or TCP, not both")
    status = check.string("Status")
    if status and status not in STATUSES:
        raise HTTPError(400, BAD_STATUS)
    definition: dict[str, Any] = {}
    if http:
        definition["HTTP"] = http
        definition["Method"] = check.string("Method") or "GET"
        if check.has("Header"):
            definition["Header"] = check.mapping("Header")
        if check.has("Body"):
            definition["Body"] = check.string("Body")
        if check.boolean("TLSSkipVerify"):
            definition["TLSSkipVerify"] = True
    if tcp:
        definition["TCP"] = tcp
    if interval:
        definition["Interval"] = format_go_duration(interval)
    if timeout:
        definition["Timeout"] = format_go_duration(timeout)
    if ttl:
        definition["TTL"] = format_go_duration(ttl)
    if check.has("DeregisterCriticalServiceAfter"):
        after = check.duration("DeregisterCriticalServiceAfter")
        definition["DeregisterCriticalServiceAfter"] = format_go_duration(after)
    # agent.go: one check is "service:<id>", several "service:<id>:<n>".
    default_id = f"service:{service.id}" if total == 1 else f"service:{service.id}:{number}"
    return check_spec(
        service,
        check_id=check.string("CheckID") or check.string("ID") or default_id,
        name=check.string("Name") or f"Service '{service.name}' check",
        kind="http" if http else "tcp" if tcp else "ttl",
        definition=definition,
        status=status,
        notes=check.string("Notes"),
    )


def check_spec(
    service: Service,
    check_id: str,
    name: str,
    kind: str,
    definition: dict[str, Any],
    status: str = "",
    notes: str = "",
) -> dict[str, Any]:
    """The catalog check spec an agent registers for one of a service's checks."""
    if check_id.startswith(SERVICE_MAINT_PREFIX):
        raise HTTPError(400, f"Invalid check: the ID prefix {SERVICE_MAINT_PREFIX!r} is reserved")
    # A new check starts critical until it runs, unless the definition gives a Status.
    return {
        "CheckID": check_id,
        "Name": name,
        "Status": status or CRITICAL,
        "Notes": notes,
        "Type": kind,
        "Interval": definition.get("Interval", ""),
        "Timeout": definition.get("Timeout", ""),
        "Definition": definition,
    }


def catalog_check(check: Body, node: str) -> dict[str, Any]:
    """A HealthCheck of a catalog registration."""
    check_node = check.string("Node") or node
    if check_node != node:
        raise HTTPError(400, f'check node "{check_node}" does not match node "{node}"')
    name = check.string("Name")
    # catalog_endpoint.go checkPreApply: the CheckID defaults to the Name.
    check_id = check.string("CheckID") or name
    if not check_id:
        raise HTTPError(400, "Missing check ID")
    status = check.string("Status") or CRITICAL
    if status not in STATUSES:
        raise HTTPError(400, BAD_STATUS)
    definition = check.object("Definition", "HealthCheckDefinition")
    fields: dict[str, Any] = {}
    if definition is not None:
        for key in ("HTTP", "TCP", "Method", "Body"):
            if definition.string(key):
                fields[key] = definition.string(key)
        for key in ("Interval", "Timeout", "TTL", "DeregisterCriticalServiceAfter"):
            if definition.duration(key):
                fields[key] = format_go_duration(definition.duration(key))
    kind = check.string("Type") or (
        "http"
        if "HTTP" in fields
        else "tcp"
        if "TCP" in fields
        else "ttl"
        if "TTL" in fields
        else ""
    )
    return {
        "Node": node,
        "CheckID": check_id,
        "Name": name or check_id,
        "Status": status,
        "Notes": check.string("Notes"),
        "Output": check.string("Output"),
        "ServiceID": check.string("ServiceID"),
        "Type": kind,
        "Interval": fields.get("Interval", ""),
        "Timeout": fields.get("Timeout", ""),
        "Definition": fields,
    }
