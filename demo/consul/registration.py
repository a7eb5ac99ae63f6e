"""Registration over HTTP: the agent's service register/deregister, catalog register/deregister.

Follows agent/agent_endpoint.go (AgentRegisterService, AgentDeregisterService),
agent/catalog_endpoint.go and agent/consul/catalog_endpoint.go (Catalog.Register/Deregister,
vetRegisterWithACL, vetDeregisterWithACL) and agent/structs (ServiceDefinition, CheckType,
ValidateServiceMetadata, ValidateWeights). Validation errors are 400s with Consul's words.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from demo.consul.agent_checks import AgentChecks
from demo.consul.bodies import Body, decode_object, format_go_duration
from demo.consul.catalog import (
    CRITICAL,
    PASSING,
    SERVICE_MAINT_PREFIX,
    STATUSES,
    WARNING,
    Catalog,
    Service,
)
from demo.consul.protocol import HTTPError, Request, Response, Route, acl_filtered
from demo.consul.queries import required
from demo.consul.raft import RaftState

CONSUL_SERVICE_ID = "consul"
# agent/structs: metadata limits (ValidateMetadata).
META_MAX_PAIRS, META_KEY_MAX, META_VALUE_MAX = 64, 128, 512
META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")
RESERVED_META_PREFIX = "consul-"
# agent/config: sidecar_min_port .. sidecar_max_port.
SIDECAR_PORTS = range(21000, 21256)
BAD_STATUS = "Status for checks must 'passing', 'warning', 'critical'"


class RegistrationEndpoints:
    """PUT /v1/agent/service/register and deregister, /v1/catalog/register and deregister."""

    def __init__(
        self, raft: RaftState, catalog: Catalog, checks: AgentChecks, node_name: str
    ) -> None:
        self._catalog = catalog
        self._raft = raft
        self._checks = checks
        self._node_name = node_name
        self._datacenter = catalog.datacenter

    def routes(self) -> list[Route]:
        """The endpoints; each checks the write permissions its body needs."""
        put = ("PUT",)
        return [
            Route(
                "/v1/agent/service/register",
                put,
                self.agent_register,
                acl_filtered,
                forwarded=False,
            ),
            Route(
                "/v1/agent/service/deregister/",
                put,
                self.agent_deregister,
                acl_filtered,
                forwarded=False,
            ),
            *(
                Route(
                    f"/v1/agent/check/{verb}/",
                    put,
                    self.agent_check_ttl,
                    acl_filtered,
                    forwarded=False,
                )
                for verb in ("pass", "warn", "fail", "update")
            ),
            Route("/v1/catalog/register", put, self.catalog_register, acl_filtered),
            Route("/v1/catalog/deregister", put, self.catalog_deregister, acl_filtered),
        ]

    # ----- agent ----------------------------------------------------------------------------

    def agent_register(self, request: Request) -> Response:
        """PUT /v1/agent/service/register (?replace-existing-checks): on this agent's node."""
        body = decode_object(request.body, "ServiceDefinition")
        name = body.string("Name")
        if not name:
            raise HTTPError(400, "Missing service name")
        service = _service(body, self._node_name, name, "ServiceDefinition")
        definitions = _check_definitions(body)
        checks = [
            _agent_check(check, service, number, len(definitions))
            for number, check in enumerate(definitions, 1)
        ]
        authz = request.authz
        with self._raft.transaction():
            sidecar = self._sidecar(body, service)
            # agent/acl.go vetServiceRegisterWithAuthorizer: service:write on the name, on the
            # name an existing registration of the ID had, and on a proxy's destination.
            authz.require("service", "write", service.name)
            existing = self._catalog.services.get(service.id)
            if existing is not None and existing.name != service.name:
                authz.require("service", "write", existing.name)
            if service.kind == "connect-proxy":
                authz.require("service", "write", _destination(service))
            if sidecar is not None:
                authz.require("service", "write", sidecar[0].name)
            # Consul: presence of the parameter is enough (len(query[...]) > 0).
            replace = request.has("replace-existing-checks")
            self._register(service, checks, replace)
            if sidecar is not None:
                self._register(sidecar[0], sidecar[1], replace)
        return Response()

    def agent_deregister(self, request: Request) -> Response:
        """PUT /v1/agent/service/deregister/<id>: the service and its checks."""
        service_id = required(request.arg, "Missing service ID")
        with self._raft.transaction():
            service = self._catalog.services.get(service_id)
            if service is None or service_id == CONSUL_SERVICE_ID:
                raise HTTPError(
                    404,
                    f'Unknown service ID "{service_id}". '
                    "Ensure that the service ID is passed, not the service name.",
                )
            request.authz.require("service", "write", service.name)
            self._catalog.deregister_service(service_id)
        return Response()

    def agent_check_ttl(self, request: Request) -> Response:
        """PUT /v1/agent/check/pass|warn|fail/<id>?note= and /update/<id> {Status, Output}."""
        verb = request.path.split("/")[4]
        check_id = required(request.arg, "Missing check ID")
        if verb == "update":
            body = decode_object(request.body, "checkUpdate")
            status, output = body.string("Status"), body.string("Output")
            if status not in STATUSES:
                # agent_endpoint.go AgentCheckUpdate.
                raise HTTPError(400, f"Invalid check status: '{status}'")
        else:
            status = {"pass": PASSING, "warn": WARNING, "fail": CRITICAL}[verb]
            output = request.get("note")
        with self._raft.transaction():
            found = [c[check_id] for c in self._catalog.checks.values() if check_id in c]
            if not found:
                raise HTTPError(
                    404,
                    f'Unknown check ID "{check_id}". '
                    "Ensure that the check ID is passed, not the check name.",
                )
            check = found[0]
            # agent/acl.go vetCheckUpdateWithAuthorizer.
            if check.service_id:
                request.authz.require("service", "write", check.service_name)
            else:
                request.authz.require("node", "write", check.node)
            if "TTL" not in check.definition:
                # agent.go updateTTLCheck.
                raise HTTPError(400, f'CheckID "{check_id}" does not have associated TTL')
            self._checks.update_ttl(check, status, output)
        return Response()

    # ----- catalog --------------------------------------------------------------------------

    def catalog_register(self, request: Request) -> Response:
        """PUT /v1/catalog/register: a node, optionally a service and checks, in one write."""
        body = decode_object(request.body, "RegisterRequest")
        node = body.string("Node")
        if not node:
            raise HTTPError(400, "Must provide node")
        skip_node_update = body.boolean("SkipNodeUpdate")
        address = body.string("Address")
        if not address and not skip_node_update:
            raise HTTPError(400, "Must provide address if SkipNodeUpdate is not set")
        self._same_datacenter(body)
        node_id = body.string("ID")
        if node_id:
            try:
                uuid.UUID(node_id)
            except ValueError:
                raise HTTPError(
                    400, f"Bad node ID: uuid string is wrong length: {node_id!r}"
                ) from None
        node_meta = body.string_map("NodeMeta")
        _validate_meta(node_meta, "Invalid node metadata")
        tagged = body.string_map("TaggedAddresses") if body.has("TaggedAddresses") else None
        service_body = body.object("Service", "NodeService")
        check_bodies = [c for c in [body.object("Check", "HealthCheck")] if c is not None]
        check_bodies += body.objects("Checks", "HealthCheck")
        authz = request.authz
        with self._raft.transaction():
            existing_node = self._catalog.nodes.get(node)
            service = None
            if service_body is not None:
                name = service_body.string("Service")
                if not name:
                    raise HTTPError(400, "Must provide service name (Service.Service)")
                service = _service(service_body, node, name, "NodeService")
            checks = [_catalog_check(check, node) for check in check_bodies]
            changes_node = existing_node is None or (
                not skip_node_update
                and (
                    existing_node.address,
                    existing_node.meta,
                    existing_node.tagged_addresses,
                    existing_node.node_id,
                )
                != (address, node_meta, tagged, node_id or existing_node.node_id)
            )
            # agent/consul/catalog_endpoint.go vetRegisterWithACL.
            if changes_node:
                authz.require("node", "write", node)
            if service is not None:
                authz.require("service", "write", service.name)
                other = self._catalog.by_node.get(node, {}).get(service.id)
                if other is not None and other.name != service.name:
                    authz.require("service", "write", other.name)
            for check in checks:
                if not check["ServiceID"]:
                    authz.require("node", "write", node)
                    continue
                if service is not None and check["ServiceID"] == service.id:
                    continue
                other = self._catalog.by_node.get(node, {}).get(check["ServiceID"])
                if other is None:
                    raise HTTPError(
                        400,
                        f"Unknown service ID '{check['ServiceID']}' for check ID "
                        f"'{check['CheckID']}'",
                    )
                authz.require("service", "write", other.name)
            if changes_node:
                self._catalog.register_node(
                    node,
                    address,
                    node_meta,
                    node_id=node_id,
                    tagged_addresses=tagged,
                    serf_check=False,
                )
            if service is not None:
                self._register(service, None, replace=False)
            for check in checks:
                try:
                    self._catalog.register_catalog_check(check)
                except (KeyError, ValueError) as error:
                    raise HTTPError(400, str(error).strip("'\"")) from None
        return Response(body=True)

    def catalog_deregister(self, request: Request) -> Response:
        """PUT /v1/catalog/deregister: a service, else a check, else the whole node."""
        body = decode_object(request.body, "DeregisterRequest")
        node = body.string("Node")
        if not node:
            raise HTTPError(400, "Must provide node")
        self._same_datacenter(body)
        service_id, check_id = body.string("ServiceID"), body.string("CheckID")
        authz = request.authz
        with self._raft.transaction():
            service = self._catalog.by_node.get(node, {}).get(service_id) if service_id else None
            check = self._catalog.checks.get(node, {}).get(check_id) if check_id else None
            # vetDeregisterWithACL: node:write is enough; else write on what is removed.
            if not authz.allows("node", "write", node):
                if service_id:
                    if service is None:
                        raise HTTPError(400, f"Unknown service ID '{service_id}'")
                    authz.require("service", "write", service.name)
                elif check_id:
                    if check is None:
                        raise HTTPError(400, f"Unknown check ID '{check_id}'")
                    if check.service_id:
                        authz.require("service", "write", check.service_name)
                    else:
                        authz.require("node", "write", node)
                else:
                    authz.require("node", "write", node)
            # fsm applyDeregister: ServiceID first, then CheckID, else the node; a missing
            # target is not an error.
            if service_id:
                if service is not None:
                    self._catalog.deregister_service(service_id)
            elif check_id:
                if check is not None:
                    self._catalog.deregister_check(check_id, node)
            elif node in self._catalog.nodes:
                self._catalog.deregister_node(node)
        return Response(body=True)

    # ----- shared ---------------------------------------------------------------------------

    def _register(
        self, service: Service, checks: list[dict[str, Any]] | None, replace: bool
    ) -> None:
        try:
            self._catalog.register_service(
                service, checks, replace_checks=replace, keep_check_state=True
            )
        except (KeyError, ValueError) as error:
            raise HTTPError(400, str(error).strip("'\"")) from None

    def _same_datacenter(self, body: Body) -> None:
        datacenter = body.string("Datacenter")
        if datacenter and datacenter != self._datacenter:
            raise HTTPError(500, "No path to datacenter")

    def _sidecar(self, body: Body, service: Service) -> tuple[Service, list[dict[str, Any]]] | None:
        # agent/sidecar_service.go: a Connect.SidecarService becomes its own proxy instance.
        connect = body.object("Connect", "ServiceConnect")
        sidecar_body = connect.object("SidecarService", "ServiceDefinition") if connect else None
        if sidecar_body is None:
            return None
        if service.connect:
            service.connect = {k: v for k, v in service.connect.items() if k != "SidecarService"}
        sidecar = _service(
            sidecar_body,
            service.node,
            sidecar_body.string("Name") or f"{service.name}-sidecar-proxy",
            "ServiceDefinition",
        )
        sidecar.id = sidecar_body.string("ID") or f"{service.id}-sidecar-proxy"
        sidecar.kind = "connect-proxy"
        # Tags and Meta come from the parent when the sidecar names none.
        sidecar.tags = sidecar.tags or list(service.tags)
        sidecar.meta = sidecar.meta or dict(service.meta)
        sidecar.port = sidecar.port or self._free_sidecar_port(sidecar.id)
        proxy = dict(sidecar.proxy or {})
        proxy.setdefault("DestinationServiceName", service.name)
        proxy.setdefault("DestinationServiceID", service.id)
        proxy.setdefault("LocalServiceAddress", "127.0.0.1")
        proxy.setdefault("LocalServicePort", service.port)
        sidecar.proxy = proxy
        address = sidecar.address or "127.0.0.1"
        checks = _check_definitions(sidecar_body)
        if checks:
            specs = [_agent_check(c, sidecar, n, len(checks)) for n, c in enumerate(checks, 1)]
        else:
            # The default sidecar check: its public listener accepts TCP connections.
            specs = [
                _check_spec(
                    sidecar,
                    check_id=f"service:{sidecar.id}:1",
                    name="Connect Sidecar Listening",
                    kind="tcp",
                    definition={"TCP": f"{address}:{sidecar.port}", "Interval": "10s"},
                )
            ]
        return sidecar, specs

    def _free_sidecar_port(self, sidecar_id: str) -> int:
        existing = self._catalog.services.get(sidecar_id)
        if existing is not None and existing.port:
            return existing.port
        used = {s.port for s in self._catalog.services.values() if s.node == self._node_name}
        for port in SIDECAR_PORTS:
            if port not in used:
                return port
        raise HTTPError(400, "No sidecar port available in the sidecar_min_port range")


def _service(body: Body, node: str, name: str, struct: str) -> Service:
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
    _validate_meta(meta, "Invalid Service Meta")
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
        if not _destination(service):
            raise HTTPError(400, "Validation failed: Proxy.DestinationServiceName must be set")
        if not service.port and not body.string("SocketPath"):
            raise HTTPError(
                400, "Validation failed: Port or SocketPath must be set for a Connect proxy"
            )
    return service


def _destination(service: Service) -> str:
    return str((service.proxy or {}).get("DestinationServiceName") or "")


def _validate_meta(meta: dict[str, str], prefix: str) -> None:
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


def _check_definitions(body: Body) -> list[Body]:
    # structs.ServiceDefinition.CheckTypes: Check unless it is empty, then Checks.
    single = body.object("Check", "CheckType")
    checks = [single] if single is not None and not single.is_empty() else []
    return checks + body.objects("Checks", "CheckType")


def _agent_check(check: Body, service: Service, number: int, total: int) -> dict[str, Any]:
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
    return _check_spec(
        service,
        check_id=check.string("CheckID") or check.string("ID") or default_id,
        name=check.string("Name") or f"Service '{service.name}' check",
        kind="http" if http else "tcp" if tcp else "ttl",
        definition=definition,
        status=status,
        notes=check.string("Notes"),
    )


def _check_spec(
    service: Service,
    check_id: str,
    name: str,
    kind: str,
    definition: dict[str, Any],
    status: str = "",
    notes: str = "",
) -> dict[str, Any]:
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


def _catalog_check(check: Body, node: str) -> dict[str, Any]:
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
