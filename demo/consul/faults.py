"""Faults the Consul double can inject, and how each one bends an answer."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from demo.consul.protocol import Response, encode_json

FAULT_KINDS = (
    "malformed_json",
    "missing_fields",
    "http_500",
    "disconnect",
    "index_backwards",
    "spurious_wake",
    "cas_conflict",
)


@dataclass
class _Fault:
    prefix: str
    kind: str
    remaining: int | None
    # spurious_wake: True moves the index, False keeps it, None alternates (same first).
    index_moves: bool | None = None
    uses: int = 0

    def next_spurious(self) -> str:
        """How this use of a spurious_wake fault ends its query: "same" or "moved" index."""
        self.uses += 1
        moved = self.uses % 2 == 0 if self.index_moves is None else self.index_moves
        return "moved" if moved else "same"


class FaultPlan:
    """Faults to inject on paths starting with a prefix, each for a number of requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(
        self,
        path_prefix: str,
        kind: str,
        count: int | None = None,
        index_moves: bool | None = None,
    ) -> None:
        """Inject `kind` on the next `count` matching requests (None: until cleared)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {kind!r}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1, or None for every request")
        with self._lock:
            self._faults.append(_Fault(path_prefix, kind, count, index_moves))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def take(self, path: str, blocking: bool, cas_write: bool = False) -> tuple[str, str] | None:
        """The (kind, detail) of the fault for this request, consuming one of its uses.

        A spurious_wake applies to blocking queries only (detail: "same" or "moved"), a
        cas_conflict to KV writes with `?cas` only.
        """
        with self._lock:
            for fault in self._faults:
                if not path.startswith(fault.prefix):
                    continue
                if fault.kind == "spurious_wake" and not blocking:
                    continue
                if fault.kind == "cas_conflict" and not cas_write:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                detail = fault.next_spurious() if fault.kind == "spurious_wake" else ""
                return fault.kind, detail
        return None


def apply_fault(kind: str, response: Response) -> None:
    """Bend a successful answer the way the fault kind says."""
    if kind == "malformed_json":
        text = encode_json(response.body, pretty=False)
        response.raw = text[: max(1, len(text) // 2)]
    elif kind == "missing_fields":
        response.body = _strip_fields(response.body)
    elif kind == "index_backwards" and "X-Consul-Index" in response.headers:
        response.headers["X-Consul-Index"] = "1"


# The key each kind of record cannot do without: health entry, check, catalog row, node, KV.
_ESSENTIAL_KEYS = ("Service", "Status", "ServiceName", "Key", "Node", "ID")


def _strip_fields(body: Any) -> Any:
    if isinstance(body, list):
        return [_strip_record(item) for item in body]
    if isinstance(body, dict):
        if body and all(isinstance(v, list) for v in body.values()):
            return dict.fromkeys(body)
        if "Node" in body and "Services" in body:
            return {"Node": body["Node"]}
        return {key: _strip_record(value) for key, value in body.items()}
    return body


def _strip_record(record: Any) -> Any:
    if not isinstance(record, dict):
        return record
    for key in _ESSENTIAL_KEYS:
        if key in record:
            return {k: v for k, v in record.items() if k != key}
    return record
