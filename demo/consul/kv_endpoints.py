"""KV and session endpoints of the Consul double."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from demo.consul.kv import InvalidSession, KVStore
from demo.consul.protocol import (
    HTTPError,
    Request,
    Response,
    Route,
    acl_filtered,
    parse_duration,
    parse_uint64,
)
from demo.consul.queries import BlockingReads, Visible, keep_visible, required
from demo.consul.sessions import Session, SessionRejected, SessionStore

SESSION_TTL_MIN_S, SESSION_TTL_MAX_S = 10.0, 86400.0


class KVEndpoints:
    """GET/PUT/DELETE /v1/kv and the /v1/session endpoints."""

    def __init__(
        self, reads: BlockingReads, kv: KVStore, sessions: SessionStore, node_name: str
    ) -> None:
        self._reads = reads
        self._raft = reads.raft
        self._kv = kv
        self._sessions = sessions
        self._node_name = node_name

    def routes(self) -> list[Route]:
        """The endpoints, with the ACL permission each needs."""

        def kv_access(request: Request) -> tuple[str, str, str] | None:
            if request.method != "GET":
                return ("key", "write", request.arg)
            # kvs_endpoint.go: Get needs key:read; List and ListKeys filter (FilterDirEnt).
            if request.has("keys") or request.has("recurse"):
                return None
            return ("key", "read", request.arg)

        get, put = ("GET",), ("PUT",)
        return [
            Route("/v1/kv/", ("GET", "PUT", "DELETE"), self.kv, kv_access),
            Route("/v1/session/create", put, self.session_create, acl_filtered),
            Route("/v1/session/destroy/", put, self.session_destroy, acl_filtered),
            Route("/v1/session/renew/", put, self.session_renew, acl_filtered),
            Route("/v1/session/info/", get, self.session_info, acl_filtered),
            Route("/v1/session/node/", get, self.session_node, acl_filtered),
            Route("/v1/session/list", get, self.session_list, acl_filtered),
        ]

    # ----- KV -------------------------------------------------------------------------------

    def kv(self, request: Request) -> Response:
        """GET, PUT and DELETE /v1/kv/<key>."""
        if request.method == "GET":
            return self._kv_get(request, request.arg)
        if request.method == "PUT":
            return self._kv_put(request, request.arg)
        return self._kv_delete(request, request.arg)

    def _kv_get(self, request: Request, key: str) -> Response:
        if request.has("keys"):
            separator = request.get("separator") or request.get("seperator")

            def render_keys() -> Visible:
                # ListKeys filters the entries before it rolls them up to the separator.
                visible = self._visible_entries(request, key)
                keys = _roll_up([entry.key for entry in visible.body], key, separator)
                # Consul answers an empty root listing with [], any other empty one with 404.
                return Visible(keys if keys or not key else Response(status=404), visible.filtered)

            return self._reads.read(request, lambda: self._kv.list_index(key), render_keys)
        if request.has("recurse"):

            def render_tree() -> Visible:
                visible = self._visible_entries(request, key)
                entries = [entry.to_json() for entry in visible.body]
                return Visible(entries or Response(status=404), visible.filtered)

            return self._reads.read(request, lambda: self._kv.list_index(key), render_tree)
        required(key, "Missing key name")

        def render_one() -> Any:
            entry = self._kv.get(key)
            if entry is None:
                return Response(status=404)
            if request.has("raw"):
                return Response(
                    raw=entry.value or b"",
                    content_type="text/plain",
                    headers={
                        "X-Content-Type-Options": "nosniff",
                        "Content-Security-Policy": "sandbox",
                    },
                )
            return [entry.to_json()]

        return self._reads.read(request, lambda: self._kv.key_index(key), render_one)

    def _kv_put(self, request: Request, key: str) -> Response:
        required(key, "Missing key name")
        _no_conflicting_flags(request, "cas", "acquire", "release")
        flags = _uint_param(request, "flags") or 0
        value = request.body or None
        try:
            if request.has("acquire"):
                done = self._kv.acquire(key, value, flags, request.get("acquire"))
            elif request.has("release"):
                done = self._kv.release(key, value, flags, request.get("release"))
            else:
                done = self._kv.put(key, value, flags, cas=_uint_param(request, "cas"))
        except InvalidSession as error:
            raise HTTPError(500, str(error)) from None
        return Response(body=done)

    def _kv_delete(self, request: Request, key: str) -> Response:
        _no_conflicting_flags(request, "recurse", "cas")
        if request.has("recurse"):
            self._kv.delete_tree(key)
            return Response(body=True)
        required(key, "Missing key name")
        cas = _uint_param(request, "cas")
        return Response(body=self._kv.delete(key, cas=cas))

    # ----- sessions -------------------------------------------------------------------------

    def session_create(self, request: Request) -> Response:
        """PUT /v1/session/create with an optional JSON body (keys are case-insensitive)."""
        fields = _json_object(request.body)
        ttl_s = _session_ttl(fields.get("ttl"))
        node = fields.get("node") or self._node_name
        # session_endpoint.go Apply: session:write on the session's node.
        request.authz.require("session", "write", node)
        try:
            session = self._sessions.create(
                node=node,
                name=fields.get("name") or "",
                lock_delay_s=_lock_delay(fields.get("lockdelay")),
                behavior=fields.get("behavior") or "release",
                ttl_s=ttl_s,
                node_checks=fields.get("nodechecks", fields.get("checks")),
                service_checks=_service_checks(fields.get("servicechecks")),
            )
        except SessionRejected as error:
            raise HTTPError(500, str(error)) from None
        return Response(body={"ID": session.id})

    def session_destroy(self, request: Request) -> Response:
        """PUT /v1/session/destroy/<id>."""
        session_id = required(request.arg, "Missing session")
        self._require_session_write(request, session_id)
        self._sessions.destroy(session_id)
        return Response(body=True)

    def session_renew(self, request: Request) -> Response:
        """PUT /v1/session/renew/<id>: the renewed session, or 404."""
        session_id = required(request.arg, "Missing session")
        self._require_session_write(request, session_id)
        session = self._sessions.renew(session_id)
        if session is None:
            raise HTTPError(404, f"Session id '{session_id}' not found")
        return Response(body=[session.to_json()])

    def session_info(self, request: Request) -> Response:
        """GET /v1/session/info/<id>: a one-element list, or [] when it is gone."""
        session_id = required(request.arg, "Missing session")

        def render() -> Visible:
            session = self._sessions.get(session_id)
            return self._visible_sessions(request, [session] if session else [])

        return self._reads.read(request, lambda: self._raft.tables["sessions"], render)

    def session_node(self, request: Request) -> Response:
        """GET /v1/session/node/<node>."""
        node = required(request.arg, "Missing node name")
        return self._reads.read(
            request,
            lambda: self._raft.tables["sessions"],
            lambda: self._visible_sessions(request, self._sessions.list(node)),
        )

    def session_list(self, request: Request) -> Response:
        """GET /v1/session/list."""
        return self._reads.read(
            request,
            lambda: self._raft.tables["sessions"],
            lambda: self._visible_sessions(request, self._sessions.list()),
        )

    # ----- ACL filters ----------------------------------------------------------------------

    def _require_session_write(self, request: Request, session_id: str) -> None:
        with self._raft.lock:
            session = self._sessions.get(session_id)
        if session is not None:
            request.authz.require("session", "write", session.node)

    def _visible_entries(self, request: Request, prefix: str) -> Visible:
        authz = request.authz
        return keep_visible(
            request.authz, self._kv.list(prefix), lambda e: authz.allows("key", "read", e.key)
        )

    def _visible_sessions(self, request: Request, sessions: list[Session]) -> Visible:
        # aclFilter.filterSessions: session:read on the session's node.
        authz = request.authz
        visible = keep_visible(
            request.authz, sessions, lambda s: authz.allows("session", "read", s.node)
        )
        return Visible([session.to_json() for session in visible.body], visible.filtered)


def _roll_up(keys: list[str], prefix: str, separator: str) -> list[str]:
    """Key names rolled up to the first separator after the prefix, deduplicated, in order."""
    names: list[str] = []
    for key in keys:
        if separator:
            cut = key.find(separator, len(prefix))
            if cut >= 0:
                key = key[: cut + len(separator)]
        if not names or names[-1] != key:
            names.append(key)
    return names


def _uint_param(request: Request, name: str) -> int | None:
    if not request.has(name):
        return None
    raw = request.get(name)
    try:
        return parse_uint64(raw)
    except ValueError:
        reason = "value out of range" if raw.isascii() and raw.isdigit() else "invalid syntax"
        raise HTTPError(400, f'strconv.ParseUint: parsing "{raw}": {reason}') from None


def _no_conflicting_flags(request: Request, *names: str) -> None:
    if sum(request.has(name) for name in names) > 1:
        raise HTTPError(400, f"Conflicting flags: {urlencode(request.pairs)}\n")


def _json_object(body: bytes) -> dict[str, Any]:
    """A JSON object body with lower-cased keys (Go's decoder matches fields case-insensitively)."""
    if not body.strip():
        return {}
    try:
        decoded = json.loads(body)
    except ValueError as error:
        raise HTTPError(400, f"Request decode failed: {error}") from None
    if not isinstance(decoded, dict):
        raise HTTPError(400, "Request decode failed: expected a JSON object")
    return {str(key).lower(): value for key, value in decoded.items()}


def _session_ttl(raw: Any) -> float:
    if not raw:
        return 0.0
    try:
        ttl_s = parse_duration(str(raw))
    except ValueError:
        raise HTTPError(400, f"Request decode failed: invalid TTL {raw!r}") from None
    if ttl_s and not SESSION_TTL_MIN_S <= ttl_s <= SESSION_TTL_MAX_S:
        raise HTTPError(400, f"Invalid Session TTL '{raw}', must be between [10s=24h0m0s]")
    return ttl_s


def _lock_delay(raw: Any) -> float:
    # Consul FixupLockDelay: a bare number below 1000 means seconds, otherwise nanoseconds.
    if raw is None or raw == "":
        return 15.0
    if isinstance(raw, (int, float)):
        return float(raw) if raw < 1000 else raw / 1e9
    try:
        return parse_duration(str(raw))
    except ValueError:
        raise HTTPError(400, f"Request decode failed: invalid LockDelay {raw!r}") from None


def _service_checks(raw: Any) -> list[dict[str, str]] | None:
    if raw is None:
        return None
    return [
        {"ID": str(item.get("ID", item.get("id", ""))), "Namespace": ""}
        for item in raw
        if isinstance(item, dict)
    ]
