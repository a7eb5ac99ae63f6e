"""Catalog state of the Consul double: nodes, services, checks, maintenance and their indexes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from demo.consul.raft import RaftState, Txn

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
STATUSES = (PASSING, WARNING, CRITICAL)
SERF_CHECK_ID = "serfHealth"
# Consul agent/agent.go: the faux checks maintenance mode registers, and their default notes.
SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT_CHECK_ID = "_node_maintenance"
DEFAULT_SERVICE_MAINT_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
DEFAULT_NODE_MAINT_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
CONSUL_VERSION = "1.20.1"

JSON = dict[str, Any]


@dataclass
class Node:
    """A catalog node."""

    name: str
    address: str
    meta: dict[str, str]
    create_index: int
    modify_index: int
    # Set by a catalog registration that names them; otherwise derived.
    node_id: str = ""
    tagged_addresses: dict[str, str] | None = None
    # An agent runs on it (serfHealth, the agent's own meta); False for external nodes.
    agent: bool = True

    @property
    def id(self) -> str:
        """The registered node ID, else a stable one derived from the name (as agents persist)."""
        return self.node_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}.node.consul"))


@dataclass
class Service:
    """A service instance registered on a node."""

    node: str
    id: str
    name: str
    kind: str = ""
    address: str = ""
    port: int = 0
    tags: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    proxy: dict[str, Any] | None = None
    enable_tag_override: bool = False
    connect: dict[str, Any] | None = None
    tagged_addresses: dict[str, Any] | None = None
    create_index: int = 0
    modify_index: int = 0

    def same_definition(self, other: Service) -> bool:
        """Whether a re-registration would change nothing (indexes aside)."""
        return _definition(self) == _definition(other)


@dataclass
class Check:
    """A node check (service_id == "") or a service check."""

    node: str
    check_id: str
    name: str
    status: str = PASSING
    output: str = ""
    notes: str = ""
    service_id: str = ""
    service_name: str = ""
    check_type: str = ""
    interval: str = ""
    timeout: str = ""
    # HealthCheckDefinition fields (HTTP, Method, Header, TCP, TTL, ...), as registered.
    definition: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


def _definition(service: Service) -> tuple:
    return (
        service.node,
        service.name,
        service.kind,
        service.address,
        service.port,
        service.tags,
        service.meta,
        service.weights,
        service.proxy,
        service.enable_tag_override,
        service.connect,
        service.tagged_addresses,
    )


class Catalog:
    """Nodes, services and checks, with the per-service and per-node indexes Consul keeps."""

    def __init__(self, raft: RaftState, datacenter: str) -> None:
        self._raft = raft
        self.datacenter = datacenter
        self.nodes: dict[str, Node] = {}
        # Service IDs are unique across nodes in the double, so agent endpoints can find them.
        self.services: dict[str, Service] = {}
        self.by_name: dict[str, dict[str, Service]] = {}
        self.by_node: dict[str, dict[str, Service]] = {}
        self.checks: dict[str, dict[str, Check]] = {}
        self._service_index: dict[str, int] = {}
        self._node_index: dict[str, int] = {}
        # Consul state store: "service_last_extinction" answers for names no longer registered,
        # "node_last_extinction" for nodes.
        self._extinction_index = 0
        self._node_extinction_index = 0
        # Sessions listen here: a check that fails or disappears invalidates sessions tied to it.
        self.on_check_failed: list[Callable[[Txn, Check], None]] = []
        self.on_node_removed: list[Callable[[Txn, str], None]] = []
        # The agents' check runners listen here: (txn, check written, what it replaced).
        self.on_check_put: list[Callable[[Txn, Check, Check | None], None]] = []

    # ----- writes ---------------------------------------------------------------------------

    def register_node(
        self,
        name: str,
        address: str,
        meta: Mapping[str, str] | None = None,
        node_id: str = "",
        tagged_addresses: Mapping[str, str] | None = None,
        serf_check: bool = True,
    ) -> None:
        """Register or update a node; a new agent node gets its serfHealth check.

        serf_check=False registers an external node (catalog/register of a node no agent runs
        on), which Consul's leader gives no serfHealth check.
        """
        meta_dict = dict(meta or {})
        tagged = dict(tagged_addresses) if tagged_addresses else None
        with self._raft.transaction() as txn:
            node = self.nodes.get(name)
            if node is not None:
                wanted = (address, meta_dict, node_id or node.node_id, tagged)
                # state/catalog.go ensureNodeTxn: an unchanged node (IsSame) moves nothing.
                if (node.address, node.meta, node.node_id, node.tagged_addresses) == wanted:
                    return
                node.address, node.meta, node.node_id, node.tagged_addresses = wanted
                node.modify_index = txn.touch("nodes")
            else:
                idx = txn.touch("nodes")
                self.nodes[name] = Node(
                    name, address, meta_dict, idx, idx, node_id, tagged, agent=serf_check
                )
                self.by_node[name] = {}
                self.checks[name] = {}
                if serf_check:
                    serf = Check(name, SERF_CHECK_ID, "Serf Health Status")
                    serf.output = "Agent alive and reachable"
                    self._put_check(txn, serf)
            self._touch_node(txn, name)

    def deregister_node(self, name: str) -> None:
        """Remove a node with all its services and checks."""
        with self._raft.transaction() as txn:
            self._require_node(name)
            for service_id in list(self.by_node[name]):
                self._remove_service(txn, service_id)
            if self.checks[name]:
                txn.touch("checks")
            del self.nodes[name], self.by_node[name], self.checks[name]
            self._node_index.pop(name, None)
            self._node_extinction_index = txn.touch("nodes")
            for hook in self.on_node_removed:
                hook(txn, name)

    def register_service(
        self,
        service: Service,
        checks: Sequence[Mapping[str, Any]] | None = (),
        replace_checks: bool = True,
        keep_check_state: bool = False,
    ) -> None:
        """Register or replace a service instance together with its checks.

        checks=None leaves the instance's checks as they are (a catalog registration of the
        service alone); a sequence replaces them (replace_checks=False keeps the others, as
        an agent registration without ?replace-existing-checks does). keep_check_state keeps
        the status and output of checks that already exist, as the agent restores them.
        """
        with self._raft.transaction() as txn:
            self._require_node(service.node)
            existing = self.services.get(service.id)
            # A new ID has no checks yet: skip the scan of the node's checks below.
            had_checks = existing is not None
            if existing is not None and existing.node != service.node:
                raise ValueError(
                    f"service ID {service.id!r} is already registered on node {existing.node!r};"
                    " the double keeps service IDs unique across nodes"
                )
            new_checks = [
                self._check_from_spec(service, spec, number, len(checks))
                for number, spec in enumerate(checks or (), 1)
            ]
            if keep_check_state:
                current = self.checks[service.node]
                new_checks = [
                    replace(c, status=current[c.check_id].status, output=current[c.check_id].output)
                    if c.check_id in current
                    else c
                    for c in new_checks
                ]
            if existing is None or not existing.same_definition(service):
                if existing is not None and existing.name != service.name:
                    self._remove_service(txn, service.id, keep_checks=True)
                    existing = None
                # state/catalog_ce.go catalogInsertService: services, service.<name>, nodes
                # and node.<name> (node catalog queries show the node's services).
                idx = txn.touch("services", "nodes")
                service.create_index = existing.create_index if existing else idx
                service.modify_index = idx
                self.services[service.id] = service
                self.by_name.setdefault(service.name, {})[service.id] = service
                self.by_node[service.node][service.id] = service
                self._service_index[service.name] = idx
                self._node_index[service.node] = idx
            if checks is None:
                if had_checks:
                    self._rename_checks(txn, service)
                return
            # A re-registration replaces the service's checks; maintenance mode survives it.
            wanted = {check.check_id for check in new_checks}
            for check in list(self.checks[service.node].values()) if had_checks else ():
                if check.service_id != service.id or check.check_id in wanted:
                    continue
                if replace_checks and not check.check_id.startswith(SERVICE_MAINT_PREFIX):
                    self._remove_check(txn, check)
                elif check.service_name != service.name:
                    self._put_check(txn, replace(check, service_name=service.name))
            for check in new_checks:
                self._put_check(txn, check)

    def _rename_checks(self, txn: Txn, service: Service) -> None:
        for check in list(self.checks[service.node].values()):
            if check.service_id == service.id and check.service_name != service.name:
                self._put_check(txn, replace(check, service_name=service.name))

    def deregister_service(self, service_id: str) -> None:
        """Remove a service instance and its checks."""
        with self._raft.transaction() as txn:
            self._require_service(service_id)
            self._remove_service(txn, service_id)

    def register_check(self, check: Check) -> None:
        """Register or update a node or service check."""
        if check.status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}, not {check.status!r}")
        with self._raft.transaction() as txn:
            self._require_node(check.node)
            if check.service_id:
                service = self._require_service(check.service_id)
                if service.node != check.node:
                    raise ValueError(
                        f"service {check.service_id!r} is on node {service.node!r}, "
                        f"not {check.node!r}"
                    )
                check.service_name = service.name
            self._put_check(txn, check)

    def register_catalog_check(self, spec: Mapping[str, Any]) -> None:
        """Register a check from a catalog registration's HealthCheck fields."""
        with self._raft.transaction() as txn:
            node = spec["Node"]
            self._require_node(node)
            service_name = ""
            if spec.get("ServiceID"):
                service = self.by_node[node].get(spec["ServiceID"])
                if service is None:
                    # state/catalog.go ensureCheckTxn: ErrMissingService.
                    raise KeyError(f"Missing service registration for check {spec['CheckID']!r}")
                service_name = service.name
            check = Check(
                node=node,
                check_id=spec["CheckID"],
                name=spec.get("Name", ""),
                status=spec.get("Status", CRITICAL),
                output=spec.get("Output", ""),
                notes=spec.get("Notes", ""),
                service_id=spec.get("ServiceID", ""),
                service_name=service_name,
                check_type=spec.get("Type", ""),
                interval=spec.get("Interval", ""),
                timeout=spec.get("Timeout", ""),
                definition=dict(spec.get("Definition") or {}),
            )
            if check.status not in STATUSES:
                raise ValueError(f"check status must be one of {STATUSES}, not {check.status!r}")
            self._put_check(txn, check)

    def set_check(self, check_id: str, status: str, output: str, node: str | None) -> None:
        """Change a check's status and output."""
        if status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}, not {status!r}")
        with self._raft.transaction():
            check = self.find_check(check_id, node)
            self.register_check(replace(check, status=status, output=output))

    def deregister_check(self, check_id: str, node: str | None) -> None:
        """Remove a check."""
        with self._raft.transaction() as txn:
            self._remove_check(txn, self.find_check(check_id, node))

    def enable_service_maintenance(self, service_id: str, reason: str = "") -> None:
        """Add the critical maintenance check; an existing one keeps its reason, as in Consul."""
        with self._raft.transaction():
            service = self._require_service(service_id)
            check_id = SERVICE_MAINT_PREFIX + service_id
            if check_id in self.checks[service.node]:
                return
            check = Check(service.node, check_id, "Service Maintenance Mode", CRITICAL)
            check.notes = reason or DEFAULT_SERVICE_MAINT_REASON
            check.service_id = service_id
            self.register_check(check)

    def disable_service_maintenance(self, service_id: str) -> None:
        """Remove the maintenance check if there is one."""
        with self._raft.transaction() as txn:
            service = self._require_service(service_id)
            check = self.checks[service.node].get(SERVICE_MAINT_PREFIX + service_id)
            if check is not None:
                self._remove_check(txn, check)

    def enable_node_maintenance(self, node: str, reason: str = "") -> None:
        """Add the critical node maintenance check."""
        with self._raft.transaction():
            self._require_node(node)
            if NODE_MAINT_CHECK_ID in self.checks[node]:
                return
            check = Check(node, NODE_MAINT_CHECK_ID, "Node Maintenance Mode", CRITICAL)
            check.notes = reason or DEFAULT_NODE_MAINT_REASON
            self.register_check(check)

    def disable_node_maintenance(self, node: str) -> None:
        """Remove the node maintenance check if there is one."""
        with self._raft.transaction() as txn:
            self._require_node(node)
            check = self.checks[node].get(NODE_MAINT_CHECK_ID)
            if check is not None:
                self._remove_check(txn, check)

    # ----- lookups and indexes --------------------------------------------------------------

    def find_check(self, check_id: str, node: str | None) -> Check:
        """Find a check by ID, on one node or on the only node that has it."""
        if node is not None:
            self._require_node(node)
            found = [self.checks[node][check_id]] if check_id in self.checks[node] else []
        else:
            found = [checks[check_id] for checks in self.checks.values() if check_id in checks]
        if not found:
            raise KeyError(f"no check {check_id!r}" + (f" on node {node!r}" if node else ""))
        if len(found) > 1:
            raise ValueError(f"check {check_id!r} exists on several nodes; pass node=")
        return found[0]

    def service_index(self, name: str, checks: bool) -> int:
        """The index a blocking query on one service name waits on."""
        if name in self._service_index:
            return self._service_index[name]
        if self._extinction_index:
            return self._extinction_index
        return self._raft.tables["checks" if checks else "services"]

    def node_index(self, name: str) -> int:
        """The index a blocking query on one node waits on (node.<name>, else the extinction)."""
        if name in self._node_index:
            return self._node_index[name]
        return self._node_extinction_index or self._raft.tables["nodes"]

    def service_checks(self, service: Service) -> list[Check]:
        """The node's checks plus the service's own, in check-ID order as Consul lists them."""
        checks = self.checks[service.node].values()
        return sorted(
            (c for c in checks if c.service_id in ("", service.id)), key=lambda c: c.check_id
        )

    # ----- internals ------------------------------------------------------------------------

    def _require_node(self, name: str) -> Node:
        if name not in self.nodes:
            raise KeyError(f"no node {name!r}; register_node() it first")
        return self.nodes[name]

    def _require_service(self, service_id: str) -> Service:
        if service_id not in self.services:
            raise KeyError(f"no service instance with ID {service_id!r}")
        return self.services[service_id]

    def _check_from_spec(
        self, service: Service, spec: Mapping[str, Any], number: int, total: int
    ) -> Check:
        # Consul agent: one check is "service:<id>", several are "service:<id>:<n>".
        default_id = f"service:{service.id}" if total == 1 else f"service:{service.id}:{number}"
        status = spec.get("Status", PASSING)
        if status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}, not {status!r}")
        return Check(
            node=service.node,
            check_id=spec.get("CheckID", default_id),
            name=spec.get("Name", f"Service '{service.name}' check"),
            status=status,
            output=spec.get("Output", ""),
            notes=spec.get("Notes", ""),
            service_id=service.id,
            service_name=service.name,
            check_type=spec.get("Type", ""),
            interval=spec.get("Interval", ""),
            timeout=spec.get("Timeout", ""),
            definition=dict(spec.get("Definition") or {}),
        )

    def _put_check(self, txn: Txn, check: Check) -> None:
        existing = self.checks[check.node].get(check.check_id)
        if existing is not None and _check_content(existing) == _check_content(check):
            return
        idx = txn.touch("checks")
        check.create_index = existing.create_index if existing else idx
        check.modify_index = idx
        self.checks[check.node][check.check_id] = check
        self._touch_for_check(txn, check)
        for listener in self.on_check_put:
            listener(txn, check, existing)
        went_critical = check.status == CRITICAL and (
            existing is None or existing.status != CRITICAL
        )
        if went_critical:
            for hook in self.on_check_failed:
                hook(txn, check)

    def _remove_check(self, txn: Txn, check: Check) -> None:
        del self.checks[check.node][check.check_id]
        txn.touch("checks")
        self._touch_for_check(txn, check)
        for hook in self.on_check_failed:
            hook(txn, check)

    def _remove_service(self, txn: Txn, service_id: str, keep_checks: bool = False) -> None:
        service = self.services.pop(service_id)
        del self.by_node[service.node][service_id]
        instances = self.by_name[service.name]
        del instances[service_id]
        # state/catalog.go deleteServiceTxn moves the same entries as an insert.
        idx = txn.touch("services", "nodes")
        if not keep_checks:
            for check in list(self.checks[service.node].values()):
                if check.service_id == service_id:
                    del self.checks[service.node][check.check_id]
                    txn.touch("checks")
                    for hook in self.on_check_failed:
                        hook(txn, check)
        if instances:
            self._service_index[service.name] = idx
        else:
            del self.by_name[service.name]
            self._service_index.pop(service.name, None)
            self._extinction_index = idx
        self._node_index[service.node] = idx

    def _touch_for_check(self, txn: Txn, check: Check) -> None:
        # Consul bumps every service on the node when a node-level check changes.
        if check.service_id:
            service = self.services.get(check.service_id)
            affected: Iterable[Service] = [service] if service else []
        else:
            affected = self.by_node[check.node].values()
        for service in affected:
            self._service_index[service.name] = txn.index
        self._node_index[check.node] = txn.index

    def _touch_node(self, txn: Txn, name: str) -> None:
        self._node_index[name] = txn.index
        for service in self.by_node[name].values():
            self._service_index[service.name] = txn.index


def _check_content(check: Check) -> tuple:
    return (
        check.name,
        check.service_name,
        check.status,
        check.output,
        check.notes,
        check.service_id,
        check.check_type,
        check.interval,
        check.timeout,
        sorted(check.definition.items()),
    )
