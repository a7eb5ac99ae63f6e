"""ConsulDouble: the object tests and the demo hold; state, Python mutation API, start/stop."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from demo.consul.acl import ACLStore
from demo.consul.agent_checks import AgentChecks
from demo.consul.catalog import CONSUL_VERSION, PASSING, Catalog, Check, Service
from demo.consul.endpoints import CatalogEndpoints
from demo.consul.faults import FaultPlan
from demo.consul.kv import KVStore
from demo.consul.kv_endpoints import KVEndpoints
from demo.consul.queries import BlockingReads
from demo.consul.raft import RaftState
from demo.consul.rate_faults import RateFaults
from demo.consul.registration import RegistrationEndpoints
from demo.consul.server import Dispatcher, DoubleHTTPServer
from demo.consul.sessions import SessionStore


class ConsulDouble:
    """An in-memory Consul cluster (servers and agents) served over HTTP on loopback."""

    def __init__(
        self,
        acl_token: str | None = None,
        datacenter: str = "dc1",
        node_name: str = "consul-server-1",
        acl_default_policy: str | None = None,
    ) -> None:
        """ACLs are on when acl_token (a management token) or acl_default_policy is given.

        With ACLs on, `acl.default_policy` is "deny" unless told otherwise: the anonymous token
        (a request with no token) and tokens made by create_acl_token() read only what their
        policies allow, and list reads leave the rest out (X-Consul-Results-Filtered-By-ACLs).
        """
        self.acl_token = acl_token
        self.datacenter = datacenter
        self.node_name = node_name
        self._raft = RaftState()
        self.catalog = Catalog(self._raft, datacenter)
        self.kv = KVStore(self._raft)
        self.sessions = SessionStore(self._raft, self.catalog, self.kv)
        self._faults = FaultPlan()
        self.acl = ACLStore(
            enabled=acl_token is not None or acl_default_policy is not None,
            default_policy=acl_default_policy or "deny",
        )
        if acl_token is not None:
            self.acl.create_token(
                acl_token, description="Initial Management Token", management=True
            )
        self._epoch = 0
        self._server: DoubleHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._host = "127.0.0.1"
        self._port = 0
        reads = BlockingReads(self._raft, self._is_live)
        self._reads = reads
        self._rate_faults = RateFaults(self.catalog, reads)
        self._agent_checks = AgentChecks(self._raft, self.catalog)
        routes = [
            *CatalogEndpoints(reads, self.catalog, self.acl, node_name).routes(),
            *KVEndpoints(reads, self.kv, self.sessions, node_name).routes(),
            *RegistrationEndpoints(
                self._raft, self.catalog, self._agent_checks, node_name
            ).routes(),
        ]
        self._dispatcher = Dispatcher(
            routes, datacenter, self.acl, self._faults, self._is_live, self._race_kv_write
        )
        # Like a real cluster: the server's own node, with the "consul" service on it.
        self.register_node(node_name, "127.0.0.1")
        self.catalog.register_service(
            Service(
                node_name,
                "consul",
                "consul",
                port=8300,
                meta={"version": CONSUL_VERSION, "raft_version": "3", "non_voter": "false"},
            )
        )

    # ----- serving --------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> ConsulDouble:
        """Listen on host:port (0 picks a free port, or the previous one after a stop)."""
        if self._server is not None:
            raise RuntimeError(f"the Consul double is already serving at {self.url}")
        if port == 0 and self._port and host == self._host:
            port = self._port
        server = DoubleHTTPServer((host, port), self._dispatcher, lambda: self._epoch)
        self._host, self._port = host, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_until_stopped,
            name=f"consul-double-{self._port}",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        self._agent_checks.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection, pending blocking queries included.

        Rate faults (start_fault) stop with it.
        """
        self._rate_faults.shutdown()
        self._agent_checks.stop()
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._raft.lock:
            self._epoch += 1
            self._server = None
            self._raft.wake_all()
        server.stop_serving()
        if thread is not None:
            thread.join(timeout=5)
        self._thread = None
        server.server_close()
        server.drop_connections()

    @property
    def running(self) -> bool:
        """Whether the double is listening."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port it listens on (kept across stop/start)."""
        if not self._port:
            raise RuntimeError("the Consul double has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Its base URL, e.g. http://127.0.0.1:8500."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ConsulDouble:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ----- catalog --------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """The current Raft index (every write advances it)."""
        return self._raft.index

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make many changes under one lock; blocking queries wake once, at the end."""
        with self._raft.batch():
            yield

    def register_node(self, node: str, address: str, meta: Mapping[str, str] | None = None) -> None:
        """Register or update a node (it gets a passing serfHealth check)."""
        self.catalog.register_node(node, address, meta)

    def deregister_node(self, node: str) -> None:
        """Remove a node, its services, checks and sessions."""
        self.catalog.deregister_node(node)

    def register_service(
        self,
        node: str,
        service_id: str,
        name: str,
        address: str = "",
        port: int = 0,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        checks: Sequence[Mapping[str, Any]] = (),
        kind: str = "",
        proxy: Mapping[str, Any] | None = None,
        weights: Mapping[str, int] | None = None,
        enable_tag_override: bool = False,
    ) -> None:
        """Register or replace a service instance with its checks.

        A check spec is a dict of Consul check fields (CheckID, Name, Status, Output, Notes,
        Type, Interval, Timeout); CheckID defaults to "service:<id>" and Status to "passing".
        """
        service = Service(
            node=node,
            id=service_id,
            name=name,
            kind=kind,
            address=address,
            port=port,
            tags=list(tags),
            meta=dict(meta or {}),
            weights=dict(weights or {"Passing": 1, "Warning": 1}),
            proxy=dict(proxy) if proxy else None,
            enable_tag_override=enable_tag_override,
        )
        self.catalog.register_service(service, checks)

    def deregister_service(self, service_id: str) -> None:
        """Remove a service instance and its checks."""
        self.catalog.deregister_service(service_id)

    def register_check(
        self,
        node: str,
        check_id: str,
        name: str,
        status: str = PASSING,
        output: str = "",
        notes: str = "",
        service_id: str = "",
        check_type: str = "",
    ) -> None:
        """Register or update a node check, or a service check when service_id is given."""
        check = Check(node, check_id, name, status, output, notes, service_id, "", check_type)
        self.catalog.register_check(check)

    def set_check(
        self, check_id: str, status: str, output: str = "", node: str | None = None
    ) -> None:
        """Set a check's status and output; node is needed for IDs like serfHealth."""
        self.catalog.set_check(check_id, status, output, node)

    def deregister_check(self, check_id: str, node: str | None = None) -> None:
        """Remove a check."""
        self.catalog.deregister_check(check_id, node)

    def enable_service_maintenance(self, service_id: str, reason: str = "") -> None:
        """Put an instance in maintenance, as PUT /v1/agent/service/maintenance does."""
        self.catalog.enable_service_maintenance(service_id, reason)

    def disable_service_maintenance(self, service_id: str) -> None:
        """Take an instance out of maintenance."""
        self.catalog.disable_service_maintenance(service_id)

    def enable_node_maintenance(self, node: str, reason: str = "") -> None:
        """Put a whole node in maintenance (critical _node_maintenance check)."""
        self.catalog.enable_node_maintenance(node, reason)

    def disable_node_maintenance(self, node: str) -> None:
        """Take a node out of maintenance."""
        self.catalog.disable_node_maintenance(node)

    # ----- KV and sessions ------------------------------------------------------------------

    def kv_put(self, key: str, value: str | bytes | None, flags: int = 0) -> int:
        """Set a key; return its ModifyIndex."""
        data = value.encode() if isinstance(value, str) else value
        with self._raft.lock:
            self.kv.put(key, data, flags)
            entry = self.kv.get(key)
            assert entry is not None
            return entry.modify_index

    def kv_get(self, key: str) -> bytes | None:
        """A key's value, or None when it is missing (or empty)."""
        with self._raft.lock:
            entry = self.kv.get(key)
            return entry.value if entry else None

    def kv_delete(self, key: str, recurse: bool = False) -> None:
        """Delete a key, or every key under a prefix."""
        if recurse:
            self.kv.delete_tree(key)
        else:
            self.kv.delete(key)

    def kv_keys(self, prefix: str = "") -> list[str]:
        """Every key under a prefix."""
        with self._raft.lock:
            return self.kv.keys(prefix)

    def create_session(
        self,
        node: str | None = None,
        name: str = "",
        ttl_s: float = 0.0,
        behavior: str = "release",
        lock_delay_s: float = 15.0,
    ) -> str:
        """Create a session (on the server's node by default); return its ID."""
        session = self.sessions.create(node or self.node_name, name, lock_delay_s, behavior, ttl_s)
        return session.id

    def destroy_session(self, session_id: str) -> None:
        """Invalidate a session, releasing or deleting its keys."""
        self.sessions.destroy(session_id)

    # ----- ACL ------------------------------------------------------------------------------

    def create_acl_policy(
        self, name: str, rules: Mapping[str, Any] | str, description: str = ""
    ) -> str:
        """Create or replace a policy; return its ID.

        Rules are Consul's policy rules in their JSON form, a level per name, e.g.
        {"service_prefix": {"": "read"}, "node_prefix": {"": "read"}, "key": {"app/x": "write"}}
        ({"policy": "read"} is accepted for a level, as in Consul's JSON rules).
        """
        return self.acl.create_policy(name, rules, description).id

    def create_acl_token(
        self,
        secret_id: str | None = None,
        policies: Sequence[str] = (),
        description: str = "",
        accessor_id: str | None = None,
        rules: Mapping[str, Any] | str | None = None,
    ) -> str:
        """Create or replace a token with named policies (and/or inline rules); return its secret.

        secret_id "anonymous" changes what requests without a token may do.
        """
        names = list(policies)
        if rules is not None:
            secret_id = secret_id or str(uuid.uuid4())
            name = f"token-{uuid.uuid5(uuid.NAMESPACE_OID, secret_id).hex[:12]}"
            self.acl.create_policy(name, rules, "inline rules of one token")
            names.append(name)
        return self.acl.create_token(secret_id, names, description, accessor_id).secret_id

    def delete_acl_token(self, secret_id: str) -> None:
        """Delete a token; its secret is then answered with 403 "ACL not found"."""
        self.acl.delete_token(secret_id)

    def acl_accessor_id(self, secret_id: str) -> str:
        """A token's AccessorID (what Consul's permission-denied messages name)."""
        token = self.acl.token(secret_id)
        if token is None:
            raise KeyError("no ACL token with that secret")
        return token.accessor_id

    # ----- requests -------------------------------------------------------------------------

    def request_count(self, path_prefix: str = "/", method: str | None = None) -> int:
        """How many requests reached the double on paths under path_prefix (since a reset)."""
        counts = self._dispatcher.request_counts()
        return sum(
            n
            for (verb, path), n in counts.items()
            if path.startswith(path_prefix) and (method is None or verb == method)
        )

    def reset_request_counts(self) -> None:
        """Start counting requests from zero."""
        self._dispatcher.request_counts(reset=True)

    # ----- faults ---------------------------------------------------------------------------

    def inject_fault(
        self,
        path_prefix: str,
        kind: str,
        count: int | None = None,
        index_moves: bool | None = None,
    ) -> None:
        """Answer requests under path_prefix badly: see FAULT_KINDS.

        malformed_json: 200 with a truncated body; missing_fields: valid JSON without the key
        each record needs (health entries lose "Service"); http_500: "No cluster leader";
        disconnect: the connection closes without an answer; index_backwards: X-Consul-Index 1;
        cas_conflict: on a KV write with `?cas` (only those use up its count), another client
        writes `{"by": "another writer"}` to the key just before this request is handled, so
        its `?cas` no longer matches and Consul answers `false`, as it does for any writer that
        loses a check-and-set race;
        spurious_wake: a blocking query (one with ?index) returns at once with nothing changed,
        at the index it sent (index_moves=False), at a higher one (True), or alternately
        (None, the same index first). Only blocking queries use up its count.
        """
        self._faults.add(path_prefix, kind, count, index_moves)

    def _race_kv_write(self, request) -> None:
        """Another writer's write to the request's KV key lands first (its ModifyIndex moves)."""
        prefix = "/v1/kv/"
        if not request.path.startswith(prefix) or len(request.path) == len(prefix):
            return
        key = request.path[len(prefix) :]
        value = b'{"by": "another writer"}'
        with self._raft.lock:
            entry = self.kv.get(key)
            if entry is not None and entry.value == value:
                value += b" "  # Consul skips a write that changes nothing: this one must not
            self.kv.put(key, value, entry.flags if entry else 0)

    def start_fault(
        self,
        kind: str,
        rate_per_s: float,
        path_prefix: str = "/v1/",
        services: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        index_moves: bool | None = None,
    ) -> None:
        """Run a rate fault from the double's background thread: see RATE_FAULT_KINDS.

        churn: rate_per_s re-registrations a second, each a real change (the "double-churn"
        meta value) of a random instance of `services` (default: any but "consul", less
        `exclude`), moving the services, nodes, service.<name> and node.<name> indexes.
        output_churn: rate_per_s check-output changes a second in all, statuses unchanged,
        moving the checks index and the check's service index. spurious_wake: rate_per_s
        times a second, every blocking query under path_prefix returns with nothing changed
        (index_moves as for inject_fault; None alternates). Starting a running kind again
        replaces it; stop_fault(), clear_faults() and stop() end them.
        """
        self._rate_faults.start(kind, rate_per_s, path_prefix, services, exclude, index_moves)

    def stop_fault(self, kind: str | None = None) -> None:
        """Stop one rate fault, or all of them."""
        self._rate_faults.stop(kind)

    def rate_faults(self) -> list[str]:
        """The rate faults that are running."""
        return self._rate_faults.running()

    def fault_events(self, kind: str) -> int:
        """How many events a rate fault has caused: changes made, or blocking queries woken."""
        return self._rate_faults.events(kind)

    def spurious_wake(self, path_prefix: str = "/v1/", index_moves: bool = False) -> int:
        """End the blocking queries waiting under path_prefix now, nothing changed; how many."""
        return self._reads.spurious_wake(path_prefix, index_moves)

    def clear_faults(self) -> None:
        """Remove every injected fault and stop every rate fault."""
        self._faults.clear()
        self._rate_faults.stop()

    def _is_live(self, epoch: int) -> bool:
        return self._server is not None and epoch == self._epoch
