"""Sessions of the Consul double: tied to a node and its checks, invalidated on TTL or failure."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from demo.consul.catalog import CRITICAL, SERF_CHECK_ID, Catalog, Check
from demo.consul.kv import KVStore
from demo.consul.raft import RaftState, Txn

JSON = dict[str, Any]
# Consul servers wait twice the TTL before invalidating a session (structs.SessionTTLMultiplier).
SESSION_TTL_MULTIPLIER = 2
BEHAVIORS = ("release", "delete")


class SessionRejected(Exception):
    """A session could not be created (missing node, missing or critical check)."""


@dataclass
class Session:
    """A session: who holds locks, how long without renewal, what happens to its keys."""

    id: str
    name: str
    node: str
    lock_delay_s: float
    behavior: str
    ttl_s: float
    node_checks: list[str]
    service_checks: list[dict[str, str]] | None
    create_index: int
    renewed_at: float = field(default_factory=time.monotonic)

    @property
    def expires_at(self) -> float | None:
        """When an unrenewed TTL session is invalidated (monotonic clock), or None."""
        if not self.ttl_s:
            return None
        return self.renewed_at + self.ttl_s * SESSION_TTL_MULTIPLIER

    def to_json(self) -> JSON:
        """Render as /v1/session/info does."""
        return {
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": int(self.lock_delay_s * 1_000_000_000),
            "Behavior": self.behavior,
            "TTL": _go_seconds(self.ttl_s) if self.ttl_s else "",
            "NodeChecks": list(self.node_checks),
            "ServiceChecks": self.service_checks,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.create_index,
        }


class SessionStore:
    """Sessions tied to a node and its checks; invalidated on TTL, destroy or a failed check."""

    def __init__(self, raft: RaftState, catalog: Catalog, kv: KVStore) -> None:
        self._raft = raft
        self._catalog = catalog
        self._kv = kv
        self.sessions: dict[str, Session] = {}
        kv.sessions = self
        catalog.on_check_failed.append(self._check_failed)
        catalog.on_node_removed.append(self._node_removed)
        raft.housekeepers.append(self.expire)

    def get(self, session_id: str) -> Session | None:
        """A live session, or None."""
        return self.sessions.get(session_id)

    def list(self, node: str | None = None) -> list[Session]:
        """Live sessions, optionally on one node, oldest first."""
        found = [s for s in self.sessions.values() if node is None or s.node == node]
        return sorted(found, key=lambda s: (s.create_index, s.id))

    def create(
        self,
        node: str,
        name: str = "",
        lock_delay_s: float = 15.0,
        behavior: str = "release",
        ttl_s: float = 0.0,
        node_checks: list[str] | None = None,
        service_checks: list[dict[str, str]] | None = None,
    ) -> Session:
        """Create a session; it needs a registered node whose listed checks are not critical."""
        if behavior not in BEHAVIORS:
            raise SessionRejected(f"Invalid session behavior setting '{behavior}'")
        if node_checks is None and service_checks is None:
            node_checks = [SERF_CHECK_ID]
        with self._raft.transaction() as txn:
            if node not in self._catalog.nodes:
                raise SessionRejected("Missing node registration")
            for check_id in [*(node_checks or []), *(c["ID"] for c in service_checks or [])]:
                check = self._catalog.checks[node].get(check_id)
                if check is None:
                    raise SessionRejected(f"Missing check '{check_id}' registration")
                if check.status == CRITICAL:
                    raise SessionRejected(f"Check '{check_id}' is in critical state")
            session = Session(
                id=str(uuid.uuid4()),
                name=name,
                node=node,
                lock_delay_s=lock_delay_s,
                behavior=behavior,
                ttl_s=ttl_s,
                node_checks=list(node_checks or []),
                service_checks=service_checks,
                create_index=txn.touch("sessions"),
            )
            self.sessions[session.id] = session
            return session

    def destroy(self, session_id: str) -> None:
        """Invalidate a session now."""
        with self._raft.transaction() as txn:
            session = self.sessions.get(session_id)
            if session is not None:
                self._invalidate(txn, session)

    def renew(self, session_id: str) -> Session | None:
        """Restart a session's TTL; None when it no longer exists."""
        with self._raft.lock:
            self.expire()
            session = self.sessions.get(session_id)
            if session is not None:
                session.renewed_at = time.monotonic()
            return session

    def expire(self) -> float | None:
        """Invalidate sessions past their TTL; return when the next one falls due."""
        with self._raft.transaction() as txn:
            now = time.monotonic()
            next_due: float | None = None
            for session in list(self.sessions.values()):
                due = session.expires_at
                if due is None:
                    continue
                if due <= now:
                    self._invalidate(txn, session)
                elif next_due is None or due < next_due:
                    next_due = due
            return next_due

    def _invalidate(self, txn: Txn, session: Session) -> None:
        del self.sessions[session.id]
        txn.touch("sessions")
        self._kv.invalidate_locks(txn, session)

    def _check_failed(self, txn: Txn, check: Check) -> None:
        for session in list(self.sessions.values()):
            if session.node != check.node:
                continue
            service_ids = [c["ID"] for c in session.service_checks or []]
            if check.check_id in session.node_checks or check.check_id in service_ids:
                self._invalidate(txn, session)

    def _node_removed(self, txn: Txn, node: str) -> None:
        for session in self.list(node):
            self._invalidate(txn, session)


def _go_seconds(seconds: float) -> str:
    return f"{seconds:g}s"
