"""Registration over HTTP: agent service register/deregister and TTL updates, catalog writes.

Follows agent/agent_endpoint.go (AgentRegisterService, AgentDeregisterService, AgentCheckPass
and friends),
agent/catalog_endpoint.go and agent/consul/catalog_endpoint.go (Catalog.Register/Deregister,
vetRegisterWithACL, vetDeregisterWithACL) and agent/structs (ServiceDefinition, CheckType,
ValidateServiceMetadata, ValidateWeights). Validation errors are 400s with Consul's words.
"""

from __future__ import annotations

import re
from typing import Any

from demo.consul.agent_checks import AgentChecks
from demo.consul.bodies import Body, decode_object
from demo.consul.catalog import (
    CRITICAL,
    PASSING,
    STATUSES,
    WARNING,
    Catalog,
    Check,
    Service,
)
from demo.consul.definitions import (
    agent_check,
    catalog_check,
    check_definitions,
    check_spec,
    proxy_destination,
    service_from,
    validate_meta,
)
from demo.consul.protocol import HTTPError, Request, Response, Route, acl_filtered
from demo.consul.queries import required
from demo.consul.raft import RaftState

CONSUL_SERVICE_ID = "consul"
NODE_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# agent/config: sidecar_min_port .. sidecar_max_port.
SIDECAR_PORTS = range(21000, 21256)


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
            Route(
                "/v1/agent/check/register",
                put,
                self.agent_check_register,
                acl_filtered,
                forwarded=False,
            ),
            Route(
                "/v1/agent/check/deregister/",
                put,
                self.agent_check_deregister,
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
        service = service_from(body, self._node_name, name, "ServiceDefinition")
        definitions = check_definitions(body)
        checks = [
            agent_check(check, service, number, len(definitions))
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
                authz.require("service", "write", proxy_destination(service))
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

    def agent_check_register(self, request: Request) -> Response:
        """PUT /v1/agent/check/register: a node check of this agent, or a service's check."""
        body = decode_object(request.body, "CheckDefinition")
        name = body.string("Name")
        if not name:
            raise HTTPError(400, "Missing check name")
        service_id = body.string("ServiceID")
        with self._raft.transaction():
            owner = Service(self._node_name, "", name)
            if service_id:
                service = self._catalog.services.get(service_id)
                if service is None:
                    raise HTTPError(400, f'ServiceID "{service_id}" does not exist')
                owner = service
            spec = agent_check(body, owner, 1, 1)
            spec.update(
                Node=owner.node,
                CheckID=body.string("CheckID") or body.string("ID") or name,
                Name=name,
                ServiceID=service_id,
            )
            # agent/acl.go vetCheckRegisterWithAuthorizer.
            if service_id:
                request.authz.require("service", "write", owner.name)
            else:
                request.authz.require("node", "write", owner.node)
            current = self._catalog.checks[owner.node].get(spec["CheckID"])
            if current is not None and not body.string("Status"):
                # The agent keeps the state a re-registered check already has.
                spec.update(Status=current.status, Output=current.output)
            self._catalog.register_catalog_check(spec)
        return Response()

    def agent_check_deregister(self, request: Request) -> Response:
        """PUT /v1/agent/check/deregister/<id>."""
        check_id = required(request.arg, "Missing check ID")
        with self._raft.transaction():
            check = self._agent_check(check_id)
            if check.service_id:
                request.authz.require("service", "write", check.service_name)
            else:
                request.authz.require("node", "write", check.node)
            self._catalog.deregister_check(check_id, check.node)
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
            check = self._agent_check(check_id)
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
            # hashicorp/go-uuid ParseUUID, as Catalog.Register applies it.
            if len(node_id) != 36:
                raise HTTPError(400, "Bad node ID: uuid string is wrong length")
            if not NODE_ID.match(node_id):
                raise HTTPError(400, "Bad node ID: uuid is improperly formatted")
        node_meta = body.string_map("NodeMeta")
        validate_meta(node_meta, "Invalid node metadata")
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
                service = service_from(service_body, node, name, "NodeService")
            checks = [catalog_check(check, node) for check in check_bodies]
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
            self._vet_register(authz, node, changes_node, service, checks)
            taken = self._catalog.services.get(service.id) if service is not None else None
            if taken is not None and taken.node != node:
                raise HTTPError(
                    400,
                    f"service ID {taken.id!r} is already registered on node {taken.node!r}; "
                    "the double keeps service IDs unique across nodes",
                )
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

    def _vet_register(
        self,
        authz: Any,
        node: str,
        changes_node: bool,
        service: Service | None,
        checks: list[dict[str, Any]],
    ) -> None:
        # agent/consul/catalog_endpoint.go vetRegisterWithACL: node:write only when the node
        # changes or for node checks; service:write on the service and on any it replaces.
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
                    f"Unknown service ID '{check['ServiceID']}' for check ID '{check['CheckID']}'",
                )
            authz.require("service", "write", other.name)

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

    def _agent_check(self, check_id: str) -> Check:
        # This agent's check: on its own node first, else on the node of its service.
        own = self._catalog.checks.get(self._node_name, {})
        if check_id in own:
            return own[check_id]
        found = [checks[check_id] for checks in self._catalog.checks.values() if check_id in checks]
        if not found:
            raise HTTPError(
                404,
                f'Unknown check ID "{check_id}". '
                "Ensure that the check ID is passed, not the check name.",
            )
        return found[0]

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
        sidecar = service_from(
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
        checks = check_definitions(sidecar_body)
        if checks:
            specs = [agent_check(c, sidecar, n, len(checks)) for n, c in enumerate(checks, 1)]
        else:
            # The default sidecar check: its public listener accepts TCP connections.
            specs = [
                check_spec(
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
