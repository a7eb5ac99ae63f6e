"""What the sync and asyncio guards share: key values, Lua scripts, events and errors."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

try:  # OpenTelemetry is optional: the guard works without it and then sends no trace_id.
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - exercised where opentelemetry-api is absent
    _otel_trace = None

DUPLICATE_INFLIGHT = "duplicate_inflight"
DUPLICATE_COMPLETED = "duplicate_completed"
PAYLOAD_MISMATCH = "payload_mismatch"
LOCK_EXPIRED = "lock_expired"
RENEW_FAILED = "renew_failed"
RELEASE_DENIED = "release_denied"
KINDS = (
    DUPLICATE_INFLIGHT,
    DUPLICATE_COMPLETED,
    PAYLOAD_MISMATCH,
    LOCK_EXPIRED,
    RENEW_FAILED,
    RELEASE_DENIED,
)

MAX_KEY_LENGTH = 255

# SOURCES.md (Redis): release and extend only by the owner, compared inside Redis.
RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
RENEW_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# Turn the owner's in-flight value into the completed record in one round trip.
# 1: stored; 0: the key had expired; -1: someone else holds the key now.
COMPLETE_LUA = """
local current = redis.call('get', KEYS[1])
if current == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
if current == false then return 0 end
return -1
"""


class IdempotencyError(Exception):
    """Base of the guard's errors."""


class IdempotencyConflict(IdempotencyError):
    """The key is in use or done: `.kind` says which, `.stored` holds a completed result."""

    def __init__(
        self,
        kind: str,
        key: str,
        *,
        stored: Any = None,
        held_ms: int | None = None,
        record: dict | None = None,
    ):
        super().__init__(f"{kind}: idempotency key {key!r}")
        self.kind = kind
        self.key = key
        self.stored = stored
        self.held_ms = held_ms
        self.record = record or {}  # the key's record as stored in Redis


class IdempotencyUnavailable(IdempotencyError):
    """Redis could not be reached and the guard fails closed."""


class InvalidIdempotencyKey(IdempotencyError, ValueError):
    """The key is empty, too long or not printable ASCII."""


def validate_key(key: str) -> str:
    """Return `key` if it is 1-255 printable ASCII characters, else raise InvalidIdempotencyKey."""
    if not isinstance(key, str) or not key:
        raise InvalidIdempotencyKey("idempotency key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"idempotency key longer than {MAX_KEY_LENGTH} characters")
    if not (key.isascii() and key.isprintable()):
        raise InvalidIdempotencyKey("idempotency key must be printable ASCII")
    return key


def fingerprint_of(*parts: bytes | str) -> str:
    """Return a SHA-256 hex digest over the parts, length-prefixed so parts cannot run together."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def now_ms() -> int:
    """Return the wall clock in Unix milliseconds (the events' `ts_ms`)."""
    return time.time_ns() // 1_000_000


def current_trace_id() -> str | None:
    """Return the current OpenTelemetry trace id as 32 hex digits, or None outside a trace."""
    if _otel_trace is None:
        return None
    context = _otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x")


@dataclass
class Lease:
    """An acquired key: the exact value this owner wrote, which only it can release or renew."""

    redis_key: str
    key: str
    value: str
    fingerprint: str | None
    ttl_ms: int
    started_monotonic: float = field(default_factory=time.monotonic)
    lost: str | None = None  # the event kind once the watchdog saw the key go
    # Set by its owner just before completing or releasing: a renewal that fails after that
    # is the owner's own doing, not a lost key.
    settled: bool = False
    # The request's trace, kept for events sent later from elsewhere (the watchdog's thread).
    trace_id: str | None = field(default_factory=current_trace_id)

    def held_ms(self) -> int:
        """Return how long this owner has held the key, in milliseconds."""
        return int((time.monotonic() - self.started_monotonic) * 1000)


def inflight_value(instance: str, fingerprint: str | None, ttl_ms: int) -> str:
    """Return a fresh owner value: a random token plus what a collector needs to judge risk."""
    record = {
        "state": "inflight",
        "token": secrets.token_hex(16),
        "instance": instance,
        "started_ms": now_ms(),
        "ttl_ms": ttl_ms,
        "fingerprint": fingerprint,
    }
    return json.dumps(record, separators=(",", ":"))


def completed_value(fingerprint: str | None, held_ms: int, result: Any) -> str:
    """Return the record kept for replay after the work finished."""
    record = {
        "state": "completed",
        "fingerprint": fingerprint,
        "completed_ms": now_ms(),
        "held_ms": held_ms,
        "result": result,
    }
    return json.dumps(record, separators=(",", ":"))


def parse_value(raw: bytes | str | None) -> dict | None:
    """Return the record stored under a key, or a minimal one for values other emitters wrote."""
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("state") not in ("inflight", "completed"):
        # A plain token from another language's guard: in flight, fingerprint unknown.
        return {"state": "inflight", "fingerprint": None, "raw": text}
    return record


def classify(existing: dict, fingerprint: str | None) -> str:
    """Return the conflict kind for a second request against an existing key record."""
    stored_fp = existing.get("fingerprint")
    if fingerprint is not None and stored_fp is not None and stored_fp != fingerprint:
        return PAYLOAD_MISMATCH
    return DUPLICATE_COMPLETED if existing["state"] == "completed" else DUPLICATE_INFLIGHT


def held_ms_of(existing: dict) -> int | None:
    """Return how long the holder of an in-flight record has had the key, when it says."""
    started = existing.get("started_ms")
    if existing["state"] != "inflight" or not isinstance(started, int):
        return existing.get("held_ms") if isinstance(existing.get("held_ms"), int) else None
    return max(0, now_ms() - started)


def event_fields(
    *,
    service: str,
    instance: str,
    key: str,
    kind: str,
    fingerprint: str | None = None,
    held_ms: int | None = None,
    ttl_ms: int | None = None,
    trace_id: str | None = None,
) -> dict[str, str]:
    """Return one stream entry in the DESIGN §6 format; optional fields only when known.

    `trace_id` defaults to the current OpenTelemetry trace's.
    """
    fields = {"service": service, "instance": instance, "key": key, "kind": kind}
    fields["ts_ms"] = str(now_ms())
    trace_id = trace_id or current_trace_id()
    if trace_id:
        fields["trace_id"] = trace_id
    if fingerprint:
        fields["fingerprint"] = fingerprint
    if held_ms is not None:
        fields["held_ms"] = str(held_ms)
    if ttl_ms is not None:
        fields["ttl_ms"] = str(ttl_ms)
    return fields


def default_instance() -> str:
    """Return `host:pid`, unique per process."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
