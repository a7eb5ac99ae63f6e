"""The reference idempotency guard on redis-py (sync): one execution per key, results replayed."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

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


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


class IdempotencyGuard:
    """Run work once per idempotency key across processes, holding the key in Redis.

    `SET key value NX PX ttl GET` takes the key in one round trip (or reports who has it); the
    owner's completion turns it into the stored result in a second. A shared watchdog thread
    renews held keys every ttl/3 while their work runs. With `fail_open=False` (the default)
    an unreachable Redis raises IdempotencyUnavailable instead of running unguarded work.
    `wait_replicas=N` also waits (same round trip) until N replicas have the fresh key, since
    asynchronous replication can lose it on failover; fewer acknowledgements → unavailable.
    """

    def __init__(
        self,
        redis: redis.Redis,
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
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ):
        if ttl_ms < 30:
            raise ValueError("ttl_ms must be at least 30 (the watchdog renews at ttl/3)")
        if result_ttl_s < 1:
            raise ValueError("result_ttl_s must be at least 1")
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
        self.fail_open = fail_open
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.encode = encode or (lambda result: result)
        self.decode = decode or (lambda stored: stored)
        self._release = redis.register_script(RELEASE_LUA)
        self._renew = redis.register_script(RENEW_LUA)
        self._complete = redis.register_script(COMPLETE_LUA)
        self._watchdog = _Watchdog(self._renew_lease) if watchdog else None

    # --- the public faces -----------------------------------------------------------------

    def run(
        self,
        key: str,
        fn: Callable[..., Any],
        *args: Any,
        fingerprint: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once for `key` and return its result.

        Raises IdempotencyConflict (`.kind`; `.stored` for a completed replay) when the key is
        taken, IdempotencyUnavailable when Redis is down and the guard fails closed.
        """
        lease = self.acquire(key, fingerprint=fingerprint)
        if lease is None:  # Redis is down and the guard fails open
            return fn(*args, **kwargs)
        try:
            with self.watching(lease):
                result = fn(*args, **kwargs)
        except BaseException:
            self.release(lease)
            raise
        self.complete(lease, result)
        return result

    @contextlib.contextmanager
    def watching(self, lease: Lease) -> Iterator[Lease]:
        """Renew the lease's key at ttl/3 for as long as the block runs (if the watchdog is on)."""
        if self._watchdog:
            self._watchdog.watch(lease)
        try:
            yield lease
        finally:
            if self._watchdog:
                self._watchdog.unwatch(lease)

    def idempotent(self, key: Callable[..., str], fingerprint: Callable[..., str] | None = None):
        """Decorate a function so each call runs through `run` with the key `key(*a, **kw)`."""

        def decorate(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                fp = fingerprint(*args, **kwargs) if fingerprint else None
                return self.run(key(*args, **kwargs), fn, *args, fingerprint=fp, **kwargs)

            return wrapper

        return decorate

    def acquire(self, key: str, *, fingerprint: str | None = None) -> Lease | None:
        """Take `key` for this process, or raise the conflict; None when failing open."""
        redis_key = self.redis_key(validate_key(key))
        value = inflight_value(self.instance, fingerprint, self.ttl_ms)
        try:
            existing, acked = self._set_nx(redis_key, value)
        except redis.RedisError as exc:
            return self._unavailable(f"cannot take idempotency key {key!r}: {exc}")
        existing = _text(existing)
        lease = Lease(redis_key, key, value, fingerprint, self.ttl_ms)
        if existing is None or existing == value:  # equal: a client retry of our own SET
            if acked is not None and acked < self.wait_replicas:
                self.release(lease)
                return self._unavailable(
                    f"idempotency key {key!r} reached {acked} of {self.wait_replicas} replicas"
                )
            return lease
        record = parse_value(existing)
        kind = classify(record, fingerprint)
        held_ms = held_ms_of(record)
        self.emit(kind, key, fingerprint=fingerprint, held_ms=held_ms)
        stored = None
        if kind == DUPLICATE_COMPLETED:
            stored = self.decode(record.get("result"))
        raise IdempotencyConflict(kind, key, stored=stored, held_ms=held_ms, record=record)

    def complete(self, lease: Lease, result: Any, *, encoded: bool = False) -> bool:
        """Store `result` under the lease's key for replay; False (and lock_expired) if it was lost.

        `encoded=True`: `result` is already JSON-able and skips the guard's `encode`.
        """
        stored_form = result if encoded else self.encode(result)
        stored = completed_value(lease.fingerprint, lease.held_ms(), stored_form)
        lease.settled = True
        try:
            outcome = self._complete(
                keys=[lease.redis_key], args=[lease.value, stored, self.result_ttl_s]
            )
        except redis.RedisError as exc:
            # The work is done: report it, the key expires by itself after its TTL.
            log.warning("idempotency key %r: result not stored: %s", lease.key, exc)
            return False
        if outcome == 1:
            return True
        self.emit(
            LOCK_EXPIRED,
            lease.key,
            fingerprint=lease.fingerprint,
            held_ms=lease.held_ms(),
            ttl_ms=lease.ttl_ms,
            trace_id=lease.trace_id,
        )
        return False

    def release(self, lease: Lease) -> bool:
        """Delete the key if this lease still owns it; otherwise emit release_denied."""
        lease.settled = True
        try:
            released = self._release(keys=[lease.redis_key], args=[lease.value])
        except redis.RedisError as exc:
            log.warning("idempotency key %r: not released: %s", lease.key, exc)
            return False
        if released:
            return True
        self.emit(
            RELEASE_DENIED,
            lease.key,
            fingerprint=lease.fingerprint,
            held_ms=lease.held_ms(),
            ttl_ms=lease.ttl_ms,
            trace_id=lease.trace_id,
        )
        return False

    def emit(
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
            self.redis.xadd(self.stream, fields, maxlen=self.stream_maxlen, approximate=True)
        except redis.RedisError as exc:
            log.warning("idempotency event %s for %r not sent: %s", kind, key, exc)

    def redis_key(self, key: str) -> str:
        """Return the Redis key that holds `key` for this service."""
        return f"{self.key_prefix}{self.service}:{key}"

    def close(self) -> None:
        """Stop the watchdog thread (held keys then expire by their TTL)."""
        if self._watchdog:
            self._watchdog.stop()

    # --- inside ---------------------------------------------------------------------------

    def _set_nx(self, redis_key: str, value: str) -> tuple[Any, int | None]:
        if not self.wait_replicas:
            return self.redis.set(redis_key, value, nx=True, px=self.ttl_ms, get=True), None
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(redis_key, value, nx=True, px=self.ttl_ms, get=True)
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        existing, acked = pipe.execute()
        return existing, int(acked)

    def _unavailable(self, reason: str) -> None:
        if self.fail_open:
            log.warning("%s; running unguarded (fail_open)", reason)
            return None
        raise IdempotencyUnavailable(reason)

    def _renew_lease(self, lease: Lease) -> bool:
        """Extend one held key; return False once it can no longer be renewed."""
        try:
            renewed = self._renew(keys=[lease.redis_key], args=[lease.value, lease.ttl_ms])
        except redis.RedisError as exc:
            log.warning("idempotency key %r: renewal failed: %s", lease.key, exc)
            return True  # try again at the next tick: the key may still be alive
        if renewed:
            return True
        # Lost while its work still runs (not completed or released by its owner meanwhile).
        if not lease.settled:
            lease.lost = RENEW_FAILED
            self.emit(
                RENEW_FAILED,
                lease.key,
                fingerprint=lease.fingerprint,
                held_ms=lease.held_ms(),
                ttl_ms=lease.ttl_ms,
                trace_id=lease.trace_id,
            )
        return False


class _Watchdog:
    """One daemon thread per guard that renews every watched lease at a third of its TTL."""

    def __init__(self, renew: Callable[[Lease], bool]):
        self._renew = renew
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, Lease]] = {}
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._wake_at = math.inf  # when the thread wakes next on its own

    def watch(self, lease: Lease) -> None:
        due = time.monotonic() + lease.ttl_ms / 3000
        with self._cond:
            self._due[id(lease)] = (due, lease)
            if self._thread is None:
                # Daemon: if the process dies, renewals stop with it and the key expires.
                self._thread = threading.Thread(
                    target=self._loop, name="idem-watchdog", daemon=True
                )
                self._thread.start()
            if due < self._wake_at:  # wake the thread only if it would sleep past this lease
                self._wake_at = due
                self._cond.notify()

    def unwatch(self, lease: Lease) -> None:
        with self._cond:
            self._due.pop(id(lease), None)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._due.clear()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                if not self._due:
                    # Sleep on until the time already promised, so that a burst of short
                    # requests does not wake this thread once each.
                    if self._wake_at <= now:
                        self._wake_at = math.inf
                    self._cond.wait(None if self._wake_at == math.inf else self._wake_at - now)
                    continue
                nearest = min(due for due, _ in self._due.values())
                if nearest > now:
                    self._wake_at = nearest
                    self._cond.wait(nearest - now)
                    continue
                ready = [lease for due, lease in self._due.values() if due <= now]
                for lease in ready:
                    self._due[id(lease)] = (now + lease.ttl_ms / 3000, lease)
            for lease in ready:
                if not self._renew(lease):
                    self.unwatch(lease)
