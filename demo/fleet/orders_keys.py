"""The orders service's idempotency: `POST /orders` with `Idempotency-Key` runs once per key.

Orders holds its keys with the fleet's reference guard (`fleet.idempotency`) on the demo's
Redis, so its conflicts reach the stream Quarterdeck reads. A normal order's key is renewed by
the watchdog; a bulk order (`"bulk": true` in the body) goes through the legacy path whose guard
has no watchdog, and when it outlives its key a client retry runs it again — the
`lock_expired` risk the Idempotency page is there to show.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import redis

from fleet.idempotency import (
    DUPLICATE_COMPLETED,
    PAYLOAD_MISMATCH,
    IdempotencyConflict,
    IdempotencyGuard,
    IdempotencyUnavailable,
    InvalidIdempotencyKey,
    fingerprint_of,
    parse_key_header,
)

KEY_TTL_MS = 2000
BULK_KEY_TTL_MS = 1000
Answer = tuple[int, dict]


class OrderKeys:
    """The two guards of one orders instance: watched keys, and the legacy bulk path's."""

    def __init__(self, redis_url: str, instance_id: str, stream: str):
        client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self.guard = IdempotencyGuard(
            client, "orders", instance=instance_id, ttl_ms=KEY_TTL_MS, stream=stream
        )
        self.bulk_guard = IdempotencyGuard(
            client,
            "orders",
            instance=instance_id,
            ttl_ms=BULK_KEY_TTL_MS,
            stream=stream,
            watchdog=False,
        )

    def answer(self, header: str | None, body: bytes, place: Callable[[dict], Answer]) -> Answer:
        """Place the order once per `Idempotency-Key`; replays, conflicts and errors answered."""
        try:
            order = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "the order is not JSON"}
        if not isinstance(order, dict):
            return 400, {"error": "the order must be a JSON object"}
        if header is None:
            return place(order)
        try:
            key = parse_key_header(header)
        except InvalidIdempotencyKey as exc:
            return 400, {"error": str(exc)}
        guard = self.bulk_guard if order.get("bulk") else self.guard
        fingerprint = fingerprint_of("POST /orders", body)
        try:
            lease = guard.acquire(key, fingerprint=fingerprint)
        except IdempotencyConflict as conflict:
            if conflict.kind == DUPLICATE_COMPLETED:
                stored = conflict.stored
                return stored["status"], {**stored["body"], "replayed": True}
            if conflict.kind == PAYLOAD_MISMATCH:
                return 422, {"error": "Idempotency-Key already used with another order"}
            return 409, {"error": "this order is still being placed"}
        except IdempotencyUnavailable as exc:
            return 503, {"error": f"idempotency keys unavailable: {exc}"}
        try:
            with guard.watching(lease):
                status, answer = place(order)
        except BaseException:
            guard.release(lease)
            raise
        if status >= 500:
            guard.release(lease)  # not kept: the client's retry places it again
        else:
            guard.complete(lease, {"status": status, "body": answer})
        return status, answer
