"""The KV store of the Consul double: CAS, session locks with lock-delay, tombstoned deletes."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from demo.consul.raft import RaftState, Txn

if TYPE_CHECKING:
    from demo.consul.sessions import Session, SessionStore

JSON = dict[str, Any]


class InvalidSession(Exception):
    """A lock operation named a session that does not exist."""


@dataclass
class KVEntry:
    """One key with its value and indexes."""

    key: str
    value: bytes | None
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str = ""

    def to_json(self) -> JSON:
        """Render as /v1/kv does: Value base64 (null when empty), Session only when held."""
        body: JSON = {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": base64.b64encode(self.value).decode() if self.value else None,
        }
        if self.session:
            body["Session"] = self.session
        body["CreateIndex"] = self.create_index
        body["ModifyIndex"] = self.modify_index
        return body


class KVStore:
    """Keys under one index, with tombstones so list indexes never slide backwards."""

    def __init__(self, raft: RaftState) -> None:
        self._raft = raft
        self.entries: dict[str, KVEntry] = {}
        self._tombstones: dict[str, int] = {}
        self._lock_delays: dict[str, float] = {}
        self.sessions: SessionStore | None = None

    def get(self, key: str) -> KVEntry | None:
        """The entry for a key, or None."""
        return self.entries.get(key)

    def key_index(self, key: str) -> int:
        """Index of a single-key read: the key's ModifyIndex, else the KV table's."""
        entry = self.entries.get(key)
        return entry.modify_index if entry else self._raft.tables["kvs"]

    def list(self, prefix: str) -> list[KVEntry]:
        """Entries under a prefix, in key order."""
        return [self.entries[k] for k in sorted(self.entries) if k.startswith(prefix)]

    def list_index(self, prefix: str) -> int:
        """Index of a prefix read: newest entry or tombstone under it, else the table's."""
        if not prefix:
            return self._raft.tables["kvs"]
        newest = max(
            [e.modify_index for k, e in self.entries.items() if k.startswith(prefix)]
            + [idx for k, idx in self._tombstones.items() if k.startswith(prefix)],
            default=0,
        )
        return newest or self._raft.tables["kvs"]

    def keys(self, prefix: str) -> list[str]:
        """Key names under a prefix, in order."""
        return [key for key in sorted(self.entries) if key.startswith(prefix)]

    def put(self, key: str, value: bytes | None, flags: int = 0, cas: int | None = None) -> bool:
        """Set a key; with cas, only if ModifyIndex matches (0: only if absent)."""
        with self._raft.transaction() as txn:
            existing = self.entries.get(key)
            if cas is not None:
                if cas == 0 and existing is not None:
                    return False
                if cas != 0 and (existing is None or existing.modify_index != cas):
                    return False
            self._set(txn, key, value or None, flags, existing)
            return True

    def acquire(self, key: str, value: bytes | None, flags: int, session_id: str) -> bool:
        """Take the lock on a key for a session (and write the value)."""
        with self._raft.transaction() as txn:
            self._require_session(session_id)
            if self._lock_delays.get(key, 0) > time.monotonic():
                return False
            existing = self.entries.get(key)
            if existing is not None and existing.session not in ("", session_id):
                return False
            entry = self._set(txn, key, value or None, flags, existing, force=True)
            if existing is None or existing.session != session_id:
                entry.lock_index = (existing.lock_index if existing else 0) + 1
            entry.session = session_id
            return True

    def release(self, key: str, value: bytes | None, flags: int, session_id: str) -> bool:
        """Give up a session's lock on a key (and write the value)."""
        with self._raft.transaction() as txn:
            self._require_session(session_id)
            existing = self.entries.get(key)
            if existing is None or existing.session != session_id:
                return False
            entry = self._set(txn, key, value or None, flags, existing, force=True)
            entry.session = ""
            return True

    def delete(self, key: str, cas: int | None = None) -> bool:
        """Delete one key; with cas, only if ModifyIndex matches (a missing key counts as done)."""
        with self._raft.transaction() as txn:
            existing = self.entries.get(key)
            if existing is None:
                return True
            if cas is not None and existing.modify_index != cas:
                return False
            self._delete(txn, key)
            return True

    def delete_tree(self, prefix: str) -> None:
        """Delete every key under a prefix."""
        with self._raft.transaction() as txn:
            for key in [k for k in self.entries if k.startswith(prefix)]:
                self._delete(txn, key)

    def invalidate_locks(self, txn: Txn, session: Session) -> None:
        """Release or delete the keys a dying session holds, and start their lock-delay."""
        held = [e for e in self.entries.values() if e.session == session.id]
        for entry in held:
            if session.behavior == "delete":
                self._delete(txn, entry.key)
            else:
                entry.session = ""
                entry.modify_index = txn.touch("kvs")
            if session.lock_delay_s:
                self._lock_delays[entry.key] = time.monotonic() + session.lock_delay_s

    def _set(
        self,
        txn: Txn,
        key: str,
        value: bytes | None,
        flags: int,
        existing: KVEntry | None,
        force: bool = False,
    ) -> KVEntry:
        # Consul skips the write (no new index) when nothing would change.
        if (
            existing is not None
            and not force
            and (existing.value, existing.flags) == (value, flags)
        ):
            return existing
        idx = txn.touch("kvs")
        if existing is None:
            entry = KVEntry(key, value, flags, create_index=idx, modify_index=idx)
            self.entries[key] = entry
            self._tombstones.pop(key, None)
            return entry
        existing.value, existing.flags, existing.modify_index = value, flags, idx
        return existing

    def _delete(self, txn: Txn, key: str) -> None:
        del self.entries[key]
        self._tombstones[key] = txn.touch("kvs")

    def _require_session(self, session_id: str) -> None:
        if not session_id:
            raise InvalidSession("missing session")
        if self.sessions is None or self.sessions.get(session_id) is None:
            raise InvalidSession(f'invalid session "{session_id}"')
