"""Catalog, health, agent and status endpoints of the Consul double."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from demo.consul import shapes
from demo.consul.acl import ACLStore
from demo.consul.catalog import CONSUL_VERSION, Catalog, Check, Service
from demo.consul.protocol import (
    HTTPError,
    Request,
    Response,
    Route,
    acl_filtered,
    parse_bool,
)
from demo.consul.queries import (
    BlockingReads,
    Visible,
    keep_visible,
    query_options,
    request_filter,
    required,
)

SERVER_ADDRESS = "127.0.0.1:8300"
CONSUL_SERVICE_ID = "consul"


class CatalogEndpoints:
    """Catalog and health reads, the agent's services and maintenance, and status."""

    def __init__(
        self, reads: BlockingReads, catalog: Catalog, acl: ACLStore, node_name: str
    ) -> None:
        self._reads = reads
        self._acl = acl
        self._raft = reads.raft
        self._catalog = catalog
        self._node_name = node_name
        self._datacenter = catalog.datacenter

    def routes(self) -> list[Route]:
        """The endpoints, with the ACL permission each needs."""
        node = self._node_name
        get, put = ("GET",), ("PUT",)
        return [
            Route("/v1/catalog/services", get, self.catalog_services, acl_filtered),
            Route("/v1/catalog/service/", get, self.catalog_service, acl_filtered),
            Route("/v1/catalog/nodes", get, self.catalog_nodes, acl_filtered),
            Route("/v1/catalog/node/", get, self.catalog_node, acl_filtered),
            Route("/v1/catalog/datacenters", get, self.catalog_datacenters),
            Route("/v1/health/service/", get, self.health_service, acl_filtered),
            Route("/v1/health/checks/", get, self.health_checks, acl_filtered),
            Route("/v1/health/state/", get, self.health_state, acl_filtered),
            Route("/v1/health/node/", get, self.health_node, acl_filtered),
            Route("/v1/agent/services", get, self.agent_services, acl_filtered, forwarded=False),
            Route(
                "/v1/agent/self",
                get,
                self.agent_self,
                lambda request: ("agent", "read", node),
                forwarded=False,
            ),
            Route(
                "/v1/agent/service/maintenance/",
                put,
                self.agent_service_maintenance,
                acl_filtered,
                forwarded=False,
            ),
            Route(
                "/v1/agent/maintenance",
                put,
                self.agent_maintenance,
                lambda request: ("node", "write", node),
                forwarded=False,
            ),
            Route("/v1/acl/token/self", get, self.acl_token_self, acl_filtered, forwarded=False),
            Route("/v1/status/leader", get, self.status_leader, forwarded=False),
            Route("/v1/status/peers", get, self.status_peers, forwarded=False),
        ]

    # ----- catalog --------------------------------------------------------------------------

    def catalog_services(self, request: Request) -> Response:
        """GET /v1/catalog/services: service name -> union of its instances' tags."""

        authz = request.authz

        def render() -> Visible:
            # aclFilter.filterServices: by service name alone.
            names = keep_visible(request.authz, sorted(self._catalog.by_name), authz.service_read)
            body = {
                name: sorted({tag for s in self._catalog.by_name[name].values() for tag in s.tags})
                for name in names.body
            }
            return Visible(body, names.filtered)

        return self._reads.read(
            request, lambda: self._raft.tables["services"], render, index_key="services"
        )

    def catalog_service(self, request: Request) -> Response:
        """GET /v1/catalog/service/<name>: instances in the flat catalog shape."""
        name = required(request.arg, "Missing service name")

        def render() -> Visible:
            visible = keep_visible(
                request.authz, self._instances(request, name), self._instance_visible(request)
            )
            return Visible([self._catalog_row(s) for s in visible.body], visible.filtered)

        # state/catalog.go serviceNodesTxn: the service's own index entry, "service.<name>".
        return self._reads.read(
            request,
            lambda: self._catalog.service_index(name, checks=False),
            render,
            True,
            f"service.{name}",
        )

    def catalog_nodes(self, request: Request) -> Response:
        """GET /v1/catalog/nodes."""
        authz = request.authz

        def render() -> Visible:
            nodes = [
                n for _, n in sorted(self._catalog.nodes.items()) if _meta_matches(n.meta, request)
            ]
            # aclFilter.filterNodes: node:read on each.
            visible = keep_visible(request.authz, nodes, lambda node: authz.node_read(node.name))
            body = [shapes.node_json(node, self._datacenter) for node in visible.body]
            return Visible(body, visible.filtered)

        return self._reads.read(request, lambda: self._raft.tables["nodes"], render, True, "nodes")

    def catalog_node(self, request: Request) -> Response:
        """GET /v1/catalog/node/<node>: the node and its services, or null."""
        name = required(request.arg, "Missing node name")

        authz = request.authz

        def render() -> Visible:
            node = self._catalog.nodes.get(name)
            if node is None:
                return Visible(None, False)
            # aclFilter.filterNodeServices: no node:read hides the node, then by service:read.
            if not authz.node_read(name):
                return Visible(None, True)
            services = self._catalog.by_node[name]
            visible = keep_visible(
                request.authz, sorted(services), lambda sid: authz.service_read(services[sid].name)
            )
            body = {
                "Node": shapes.node_json(node, self._datacenter),
                "Services": {sid: shapes.service_json(services[sid]) for sid in visible.body},
            }
            return Visible(body, visible.filtered)

        return self._reads.read(
            request, lambda: self._catalog.node_index(name), render, index_key=f"node.{name}"
        )

    def catalog_datacenters(self, request: Request) -> Response:
        """GET /v1/catalog/datacenters."""
        return Response(body=[self._catalog.datacenter])

    # ----- health ---------------------------------------------------------------------------

    def health_service(self, request: Request) -> Response:
        """GET /v1/health/service/<name>: Node, Service and Checks of every instance."""
        name = required(request.arg, "Missing service name")
        passing_only = request.flag("passing")

        def render() -> Visible:
            entries = []
            visible = keep_visible(
                request.authz, self._instances(request, name), self._instance_visible(request)
            )
            for service in visible.body:
                checks = self._catalog.service_checks(service)
                if passing_only and any(check.status != "passing" for check in checks):
                    continue
                entries.append(
                    {
                        "Node": shapes.node_json(
                            self._catalog.nodes[service.node], self._datacenter
                        ),
                        "Service": shapes.service_json(service),
                        "Checks": [self._check(check) for check in checks],
                    }
                )
            return Visible(entries, visible.filtered)

        return self._reads.read(
            request,
            lambda: self._catalog.service_index(name, checks=True),
            render,
            True,
            f"service.{name}",
        )

    def health_checks(self, request: Request) -> Response:
        """GET /v1/health/checks/<service>: the service checks of every instance."""
        name = required(request.arg, "Missing service name")

        def render() -> Visible:
            checks = [
                check
                for service in self._instances(request, name)
                for check in self._catalog.service_checks(service)
                if check.service_id
            ]
            return self._visible_checks(request, checks)

        return self._reads.read(
            request,
            lambda: self._catalog.service_index(name, checks=True),
            render,
            True,
            f"service.{name}",
        )

    def health_state(self, request: Request) -> Response:
        """GET /v1/health/state/<any|passing|warning|critical>: a flat list of checks."""
        # Consul refuses only an empty state; an unknown one matches no check.
        state = required(request.arg, "Missing check state")

        def render() -> Visible:
            checks = [
                check
                for node in sorted(self._catalog.checks)
                for _, check in sorted(self._catalog.checks[node].items())
                if state in ("any", check.status)
            ]
            return self._visible_checks(request, checks)

        return self._reads.read(
            request, lambda: self._raft.tables["checks"], render, True, "checks"
        )

    def health_node(self, request: Request) -> Response:
        """GET /v1/health/node/<node>: the node's checks, its services' included."""
        name = required(request.arg, "Missing node name")

        def render() -> Visible:
            checks = self._catalog.checks.get(name, {})
            return self._visible_checks(request, [checks[cid] for cid in sorted(checks)])

        return self._reads.read(
            request, lambda: self._catalog.node_index(name), render, True, f"node.{name}"
        )

    # ----- agent ----------------------------------------------------------------------------

    def agent_services(self, request: Request) -> Response:
        """GET /v1/agent/services; agent endpoints block on ?hash= (X-Consul-ContentHash)."""
        wait_s = query_options(request).wait_s
        predicate = request_filter(request)
        waited_hash = request.get("hash")

        authz = request.authz

        def render() -> Visible:
            services = self._catalog.services
            # agent/agent_endpoint.go AgentServices: ACL filter before ?filter, and say so.
            visible = keep_visible(
                request.authz,
                (sid for sid in sorted(services) if sid != CONSUL_SERVICE_ID),
                lambda sid: authz.service_read(services[sid].name),
            )
            body = {}
            for sid in visible.body:
                entry = shapes.agent_service_json(services[sid], self._datacenter)
                entry["ContentHash"] = _content_hash(entry)
                body[sid] = entry
            return Visible(body, visible.filtered)

        with self._raft.lock:
            if waited_hash:
                self._reads.wait(
                    request, lambda: _content_hash(render().body) != waited_hash, wait_s
                )
            self._reads.ensure_live(request)
            visible = render()
        body = visible.body
        digest = _content_hash(body)
        if predicate is not None:
            body = {sid: entry for sid, entry in body.items() if predicate(entry)}
        headers = {"X-Consul-ContentHash": digest}
        if visible.filtered:
            headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
        return Response(body=body, headers=headers)

    def agent_self(self, request: Request) -> Response:
        """GET /v1/agent/self: the agent's configuration and membership, abridged."""
        with self._raft.lock:
            node = self._catalog.nodes.get(self._node_name)
            address = node.address if node else "127.0.0.1"
            node_id = node.id if node else ""
        datacenter = self._catalog.datacenter
        return Response(
            body={
                "Config": {
                    "Datacenter": datacenter,
                    "PrimaryDatacenter": datacenter,
                    "NodeName": self._node_name,
                    "NodeID": node_id,
                    "Revision": "quarterdeck-double",
                    "Server": True,
                    "Version": CONSUL_VERSION,
                },
                "Member": {
                    "Name": self._node_name,
                    "Addr": address,
                    "Port": 8301,
                    "Tags": {"dc": datacenter, "role": "consul", "build": CONSUL_VERSION},
                    "Status": 1,
                },
                "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
                "Stats": {},
            }
        )

    def agent_service_maintenance(self, request: Request) -> Response:
        """PUT /v1/agent/service/maintenance/<id>?enable=&reason=."""
        service_id = required(request.arg, "Missing service ID")
        enable = _enable_param(request)
        if service_id == CONSUL_SERVICE_ID or service_id not in self._catalog.services:
            raise HTTPError(
                404,
                f'Unknown service ID "{service_id}". '
                "Ensure that the service ID is passed, not the service name.",
            )
        # agent/acl.go vetServiceUpdateWithAuthorizer: service:write on the service's name.
        request.authz.require("service", "write", self._catalog.services[service_id].name)
        if enable:
            self._catalog.enable_service_maintenance(service_id, request.get("reason"))
        else:
            self._catalog.disable_service_maintenance(service_id)
        return Response()

    def agent_maintenance(self, request: Request) -> Response:
        """PUT /v1/agent/maintenance?enable=&reason=: the agent's own node."""
        if _enable_param(request):
            self._catalog.enable_node_maintenance(self._node_name, request.get("reason"))
        else:
            self._catalog.disable_node_maintenance(self._node_name)
        return Response()

    # ----- status ---------------------------------------------------------------------------

    def status_leader(self, request: Request) -> Response:
        """GET /v1/status/leader: the Raft leader's server address."""
        return Response(body=SERVER_ADDRESS)

    def status_peers(self, request: Request) -> Response:
        """GET /v1/status/peers."""
        return Response(body=[SERVER_ADDRESS])

    # ----- ACL ------------------------------------------------------------------------------

    def acl_token_self(self, request: Request) -> Response:
        """GET /v1/acl/token/self: the token the request carries (any known token may)."""
        if not self._acl.enabled:
            # agent/http.go answers acl.ErrDisabled with 401.
            raise HTTPError(401, "ACL support disabled")
        token = self._acl.token(request.token())
        if token is None:
            raise HTTPError(403, "ACL not found")
        return Response(body=self._acl.token_json(token))

    # ----- shared ---------------------------------------------------------------------------

    def _instance_visible(self, request: Request) -> Callable[[Service], bool]:
        # aclFilter.filterServiceNodes / filterCheckServiceNodes: node:read and service:read.
        authz = request.authz
        return lambda service: authz.node_read(service.node) and authz.service_read(service.name)

    def _visible_checks(self, request: Request, checks: list[Check]) -> Visible:
        # aclFilter.filterHealthChecks: node:read, and service:read for a service's check.
        authz = request.authz
        visible = keep_visible(
            request.authz,
            checks,
            lambda c: authz.node_read(c.node) and authz.service_read(c.service_name),
        )
        return Visible([self._check(check) for check in visible.body], visible.filtered)

    def _check(self, check: Check) -> dict[str, Any]:
        return shapes.check_json(check, self._catalog.services.get(check.service_id))

    def _catalog_row(self, service: Service) -> dict[str, Any]:
        node = self._catalog.nodes[service.node]
        return shapes.catalog_service_json(service, node, self._datacenter)

    def _instances(self, request: Request, name: str) -> list[Service]:
        """A service's instances in node order, narrowed by the deprecated ?tag and ?node-meta."""
        tags = request.get_all("tag")
        instances = self._catalog.by_name.get(name, {}).values()
        return sorted(
            (
                service
                for service in instances
                if all(tag in service.tags for tag in tags)
                and _meta_matches(self._catalog.nodes[service.node].meta, request)
            ),
            key=lambda service: (service.node, service.id),
        )


def _meta_matches(meta: Mapping[str, str], request: Request) -> bool:
    for pair in request.get_all("node-meta"):
        key, _, value = pair.partition(":")
        if meta.get(key) != value:
            return False
    return True


def _content_hash(body: Any) -> str:
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(encoded, digest_size=8).hexdigest()


def _enable_param(request: Request) -> bool:
    if not request.has("enable"):
        raise HTTPError(400, "Missing value for enable")
    raw = request.get("enable")
    try:
        return parse_bool(raw)
    except ValueError:
        raise HTTPError(400, f'Invalid value for enable: "{raw}"') from None
