"""The guard for asyncio services (redis.asyncio): the same keys, values, scripts and events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis
import redis.asyncio

from fleet.idempotency.core import (
    COMPLETE_LUA,
    DUPLICATE_COMPLETED,
    LOCK_EXPIRED,
    RELEASE_DENIED,
    RELEASE_LUA,
    RENEW_FAILED,
    RENEW_LUA,
    IdempotencyConflict,
    IdempotencyUnavailable,
    Lease,
    classify,
    completed_value,
    default_instance,
    event_fields,
    held_ms_of,
    inflight_value,
    parse_value,
    validate_key,
)

log = logging.getLogger(__name__)


class AsyncIdempotencyGuard:
    """IdempotencyGuard for `redis.asyncio.Redis`; the watchdog is one task per held key."""

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        service: str,
        *,
        instance: str | None = None,
        ttl_ms: int = 30000,
        result_ttl_s: int = 86400,
        stream: str = "quarterdeck:idem:events",
        stream_maxlen: int = 100_000,
        key_prefix: str = "idem:",
        watchdog: bool = True,
        fail_open: bool = False,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ):
        if ttl_ms < 30:
            raise ValueError("ttl_ms must be at least 30 (the watchdog renews at ttl/3)")
        if not service:
            raise ValueError("service must be a non-empty name")
        self.redis = redis
        self.service = service
        self.instance = instance or default_instance()
        self.ttl_ms = ttl_ms
        self.result_ttl_s = result_ttl_s
        self.stream = stream
        self.stream_maxlen = stream_maxlen
        self.key_prefix = key_prefix
        self.watchdog = watchdog
        self.fail_open = fail_open
        self.encode = encode or (lambda result: result)
        self.decode = decode or (lambda stored: stored)
        self._release = redis.register_script(RELEASE_LUA)
        self._renew = redis.register_script(RENEW_LUA)
        self._complete = redis.register_script(COMPLETE_LUA)

    async def run(
        self,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        fingerprint: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Await `fn(*args, **kwargs)` once for `key`; conflicts raise IdempotencyConflict."""
        lease = await self.acquire(key, fingerprint=fingerprint)
        if lease is None:
            return await fn(*args, **kwargs)
        try:
            async with self.watching(lease):
                result = await fn(*args, **kwargs)
        except BaseException:
            await self.release(lease)
            raise
        await self.complete(lease, result)
        return result

    async def acquire(self, key: str, *, fingerprint: str | None = None) -> Lease | None:
        """Take `key`, or raise the conflict; None when Redis is down and the guard fails open."""
        redis_key = f"{self.key_prefix}{self.service}:{validate_key(key)}"
        value = inflight_value(self.instance, fingerprint, self.ttl_ms)
        try:
            existing = await self.redis.set(redis_key, value, nx=True, px=self.ttl_ms, get=True)
        except redis.RedisError as exc:
            if self.fail_open:
                log.warning("cannot take idempotency key %r: %s; running unguarded", key, exc)
                return None
            raise IdempotencyUnavailable(f"cannot take idempotency key {key!r}: {exc}") from exc
        if isinstance(existing, bytes):
            existing = existing.decode("utf-8", "replace")
        if existing is None or existing == value:
            return Lease(redis_key, key, value, fingerprint, self.ttl_ms)
        record = parse_value(existing)
        kind = classify(record, fingerprint)
        held_ms = held_ms_of(record)
        await self.emit(kind, key, fingerprint=fingerprint, held_ms=held_ms)
        stored = self.decode(record.get("result")) if kind == DUPLICATE_COMPLETED else None
        raise IdempotencyConflict(kind, key, stored=stored, held_ms=held_ms, record=record)

    @contextlib.asynccontextmanager
    async def watching(self, lease: Lease) -> AsyncIterator[Lease]:
        """Renew the lease's key at ttl/3 while the block runs."""
        task = asyncio.create_task(self._renew_loop(lease)) if self.watchdog else None
        try:
            yield lease
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def complete(self, lease: Lease, result: Any, *, encoded: bool = False) -> bool:
        """Store the result for replay; False (and lock_expired) if the key was lost."""
        stored = completed_value(
            lease.fingerprint, lease.held_ms(), result if encoded else self.encode(result)
        )
        lease.settled = True
        try:
            outcome = await self._complete(
                keys=[lease.redis_key], args=[lease.value, stored, self.result_ttl_s]
            )
        except redis.RedisError as exc:
            log.warning("idempotency key %r: result not stored: %s", lease.key, exc)
            return False
        if outcome == 1:
            return True
        await self.emit(
            LOCK_EXPIRED,
            lease.key,
            fingerprint=lease.fingerprint,
            held_ms=lease.held_ms(),
            ttl_ms=lease.ttl_ms,
            trace_id=lease.trace_id,
        )
        return False

    async def release(self, lease: Lease) -> bool:
        """Delete the key if this lease still owns it; otherwise emit release_denied."""
        lease.settled = True
        try:
            released = await self._release(keys=[lease.redis_key], args=[lease.value])
        except redis.RedisError as exc:
            log.warning("idempotency key %r: not released: %s", lease.key, exc)
            return False
        if released:
            return True
        await self.emit(
            RELEASE_DENIED,
            lease.key,
            fingerprint=lease.fingerprint,
            held_ms=lease.held_ms(),
            ttl_ms=lease.ttl_ms,
            trace_id=lease.trace_id,
        )
        return False

    async def emit(
        self,
        kind: str,
        key: str,
        *,
        fingerprint: str | None = None,
        held_ms: int | None = None,
        ttl_ms: int | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Append one conflict event to the stream; a Redis error is logged, never raised.

        `trace_id` defaults to the current OpenTelemetry trace's.
        """
        fields = event_fields(
            service=self.service,
            instance=self.instance,
            key=key,
            kind=kind,
            fingerprint=fingerprint,
            held_ms=held_ms,
            ttl_ms=ttl_ms,
            trace_id=trace_id,
        )
        try:
            await self.redis.xadd(self.stream, fields, maxlen=self.stream_maxlen, approximate=True)
        except redis.RedisError as exc:
            log.warning("idempotency event %s for %r not sent: %s", kind, key, exc)

    async def _renew_loop(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(lease.ttl_ms / 3000)
            try:
                renewed = await self._renew(
                    keys=[lease.redis_key], args=[lease.value, lease.ttl_ms]
                )
            except redis.RedisError as exc:
                log.warning("idempotency key %r: renewal failed: %s", lease.key, exc)
                continue
            if not renewed:
                if not lease.settled:  # lost, not completed or released by its owner
                    lease.lost = RENEW_FAILED
                    await self.emit(
                        RENEW_FAILED,
                        lease.key,
                        fingerprint=lease.fingerprint,
                        held_ms=lease.held_ms(),
                        ttl_ms=lease.ttl_ms,
                        trace_id=lease.trace_id,
                    )
                return
