"""The reference idempotency guard for the fleet's own services (redis-py only).

Contract: DESIGN §6. Keys live at `idem:<service>:<key>`; every conflict goes to the Redis
stream `quarterdeck:idem:events` (`XADD … MAXLEN ~`). See docs/idempotency.md.
"""

from fleet.idempotency.aio import AsyncIdempotencyGuard
from fleet.idempotency.core import (
    DUPLICATE_COMPLETED,
    DUPLICATE_INFLIGHT,
    KINDS,
    LOCK_EXPIRED,
    PAYLOAD_MISMATCH,
    RELEASE_DENIED,
    RENEW_FAILED,
    IdempotencyConflict,
    IdempotencyError,
    IdempotencyUnavailable,
    InvalidIdempotencyKey,
    Lease,
    fingerprint_of,
)
from fleet.idempotency.guard import IdempotencyGuard
from fleet.idempotency.wsgi import IdempotencyMiddleware, parse_key_header

__all__ = [
    "DUPLICATE_COMPLETED",
    "DUPLICATE_INFLIGHT",
    "KINDS",
    "LOCK_EXPIRED",
    "PAYLOAD_MISMATCH",
    "RELEASE_DENIED",
    "RENEW_FAILED",
    "AsyncIdempotencyGuard",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyGuard",
    "IdempotencyMiddleware",
    "IdempotencyUnavailable",
    "InvalidIdempotencyKey",
    "Lease",
    "fingerprint_of",
    "parse_key_header",
]
