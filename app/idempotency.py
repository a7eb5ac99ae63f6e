"""`Idempotency-Key` on Quarterdeck's own state-changing requests (DESIGN §5, §6).

`@idempotent_request` on an API view (or `run_once` from a form's view): a repeat with the same
key (same caller, same endpoint) gets the first answer replayed (`Idempotent-Replayed: true`),
409 while the first still runs, 422 with another payload, 400 for a malformed key. With `[redis]`
configured the keys are held by the fleet's reference guard (`fleet.idempotency`, events on the
configured stream; Redis unreachable: 503, or unguarded with `[redis] fail_open`); without it,
by the `idempotency_keys` table, whose conflicts are stored as events of service `quarterdeck`
(stream `STORE_STREAM`) beside the fleet's, so the Idempotency page shows them too. Only an
answer below 400 is kept: a refusal (4xx: nothing ran), a 5xx or an exception releases the key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from flask import Flask, Response, current_app, g, jsonify, make_response, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app.models import IdempotencyKeyRow
from app.store.idempotency import add_idem_event
from collectors.redis_idem import IdemEvent
from fleet.idempotency import (
    DUPLICATE_COMPLETED,
    DUPLICATE_INFLIGHT,
    LOCK_EXPIRED,
    PAYLOAD_MISMATCH,
    RELEASE_DENIED,
    IdempotencyConflict,
    IdempotencyGuard,
    IdempotencyUnavailable,
    InvalidIdempotencyKey,
    fingerprint_of,
    parse_key_header,
)
from fleet.idempotency.core import current_trace_id, default_instance, validate_key

log = logging.getLogger(__name__)

EXTENSION = "quarterdeck_idempotency"
MAX_KEY_LENGTH = 200  # the guard's limit is 255; the caller's scope takes the rest
RESULT_TTL = timedelta(hours=24)
STORE_HOLD = timedelta(minutes=10)  # a crashed holder's key lapses after this
REDIS_TTL_MS = 30000  # renewed at a third of it while the request runs
REDIS_TIMEOUT_S = 2  # a request waits this long (per try) for an unresponsive Redis
SERVICE = "quarterdeck"
# The `stream` of the events the store-held keys record (no Redis stream has this name).
STORE_STREAM = "quarterdeck:store"
STORED_HEADERS = ("content-type", "location", "etag", "last-modified")


@dataclass
class Hold:
    """A key held by this request: the backend's own lease plus where it lives."""

    scope: str
    key: str
    lease: object
    fingerprint: str = ""
    started: float = field(default_factory=time.monotonic)

    def held_ms(self) -> int:
        """Return how long this request has held the key, in milliseconds."""
        return int((time.monotonic() - self.started) * 1000)


class RedisKeys:
    """Hold keys with the fleet's reference guard on the configured Redis."""

    def __init__(self, guard: IdempotencyGuard):
        self.guard = guard

    def acquire(self, scope: str, key: str, fingerprint: str) -> Hold | None:
        """Take the key; None when Redis is unreachable and `[redis] fail_open` is set."""
        lease = self.guard.acquire(f"{scope}:{key}", fingerprint=fingerprint)
        return None if lease is None else Hold(scope, key, lease)

    def run(self, hold: Hold, view):
        with self.guard.watching(hold.lease):
            return view()

    def complete(self, hold: Hold, answer: dict) -> None:
        self.guard.complete(hold.lease, answer, encoded=True)

    def release(self, hold: Hold) -> None:
        self.guard.release(hold.lease)


class StoreKeys:
    """Hold keys in the `idempotency_keys` table (no Redis configured); record each conflict."""

    def __init__(self, store, clock):
        self.store = store
        self.clock = clock
        self.holder = default_instance()

    def acquire(self, scope: str, key: str, fingerprint: str) -> Hold:
        try:
            for _ in range(2):  # a concurrent insert of the same key: read it back once
                try:
                    return self._acquire_once(scope, key, fingerprint)
                except IntegrityError:
                    continue
            raise IdempotencyConflict(DUPLICATE_INFLIGHT, key)
        except IdempotencyConflict as conflict:
            self._record(conflict.kind, scope, key, fingerprint, held_ms=conflict.held_ms)
            raise

    def _record(self, kind: str, scope: str, key: str, fingerprint: str, **extra) -> None:
        """Store a conflict as an event (as the guard's XADD); a store error is logged only."""
        at_ms = int(self.clock().timestamp() * 1000)
        event = IdemEvent(
            f"{at_ms}-{secrets.token_hex(8)}", at_ms, SERVICE, self.holder, f"{scope}:{key}",
            kind, current_trace_id() or "", fingerprint, extra.get("held_ms"),
            extra.get("ttl_ms"),
        )  # fmt: skip
        try:
            with self.store.session(write=True) as db:
                add_idem_event(db, STORE_STREAM, event)
        except Exception:
            log.exception("idempotency event %s for %r not stored", kind, key)

    def _acquire_once(self, scope: str, key: str, fingerprint: str) -> Hold:
        now = self.clock()
        with self.store.session(write=True) as db:
            row = db.scalar(
                select(IdempotencyKeyRow).where(
                    IdempotencyKeyRow.scope == scope, IdempotencyKeyRow.key == key
                )
            )
            if row is not None and row.expires_at <= now:
                db.delete(row)  # a lapsed hold or an answer past its day
                db.flush()
                row = None
            if row is None:
                token = secrets.token_hex(16)
                db.add(
                    IdempotencyKeyRow(
                        scope=scope,
                        key=key,
                        token=token,
                        state="inflight",
                        fingerprint=fingerprint,
                        holder=self.holder,
                        created_at=now,
                        expires_at=now + STORE_HOLD,
                        headers=[],
                        error="",
                    )
                )
                db.flush()
                return Hold(scope, key, token, fingerprint)
            if row.fingerprint != fingerprint:
                raise IdempotencyConflict(PAYLOAD_MISMATCH, key)  # completed or in flight
            if row.state != "completed":
                held_ms = int((now - row.created_at).total_seconds() * 1000)
                raise IdempotencyConflict(DUPLICATE_INFLIGHT, key, held_ms=max(0, held_ms))
            answer = {
                "status": row.status,
                "headers": row.headers,
                "body_b64": base64.b64encode(row.body or b"").decode("ascii"),
            }
            raise IdempotencyConflict(DUPLICATE_COMPLETED, key, record={"result": answer})

    def run(self, hold: Hold, view):
        return view()

    def complete(self, hold: Hold, answer: dict) -> None:
        with self.store.session(write=True) as db:
            done = db.execute(
                update(IdempotencyKeyRow)
                .where(
                    IdempotencyKeyRow.scope == hold.scope,
                    IdempotencyKeyRow.key == hold.key,
                    IdempotencyKeyRow.token == hold.lease,
                )
                .values(
                    state="completed",
                    status=answer["status"],
                    headers=answer["headers"],
                    body=base64.b64decode(answer["body_b64"]),
                    expires_at=self.clock() + RESULT_TTL,
                )
            )
        if done.rowcount == 0:
            log.warning("idempotency key %r lapsed before its answer was kept", hold.key)
            self._record_lost(LOCK_EXPIRED, hold)

    def release(self, hold: Hold) -> None:
        with self.store.session(write=True) as db:
            done = db.execute(
                delete(IdempotencyKeyRow).where(
                    IdempotencyKeyRow.scope == hold.scope,
                    IdempotencyKeyRow.key == hold.key,
                    IdempotencyKeyRow.token == hold.lease,
                )
            )
        if done.rowcount == 0:  # the hold lapsed and another request may hold the key now
            self._record_lost(RELEASE_DENIED, hold)

    def _record_lost(self, kind: str, hold: Hold) -> None:
        ttl_ms = int(STORE_HOLD.total_seconds() * 1000)
        self._record(
            kind, hold.scope, hold.key, hold.fingerprint, held_ms=hold.held_ms(), ttl_ms=ttl_ms
        )


def keys_for(config, store, clock) -> RedisKeys | StoreKeys:
    """Return the Redis-backed keys when `[redis]` is configured, else the store-backed ones."""
    if config.redis is None:
        return StoreKeys(store, clock)
    client = redis.Redis.from_url(
        config.redis.url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    guard = IdempotencyGuard(
        client,
        SERVICE,
        ttl_ms=REDIS_TTL_MS,
        result_ttl_s=int(RESULT_TTL.total_seconds()),
        stream=config.redis.stream,
        fail_open=config.redis.fail_open,
    )
    return RedisKeys(guard)


def init_app(app: Flask) -> None:
    """Choose where this app holds its idempotency keys."""
    qd = app.extensions["quarterdeck"]
    app.extensions[EXTENSION] = keys_for(qd.config, qd.store, qd.clock)


class KeyRefused(Exception):
    """A request its Idempotency-Key does not let run: still in flight, reused, unavailable."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        """The API's error answer for it."""
        response = _error(self.status, self.code, self.message)
        if self.status in (409, 503):
            response.headers["Retry-After"] = "1"
        return response


def idempotent_request(view):
    """Honour `Idempotency-Key` on a state-changing API view: it runs once per key."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Idempotency-Key")
        if header is None:
            return view(*args, **kwargs)
        fingerprint = fingerprint_of(
            request.method, request.path, request.query_string, request.get_data(cache=True)
        )
        try:
            return run_once(parse_key_header(header), fingerprint, lambda: view(*args, **kwargs))
        except InvalidIdempotencyKey as exc:
            return _error(400, "invalid_idempotency_key", str(exc))
        except KeyRefused as refused:
            return refused.response()

    return wrapper


def idempotency_key() -> str | None:
    """Return the key this request runs under (inside `run_once`), to record beside its effect."""
    return g.get("idempotency_key")


def run_once(key: str, fingerprint: str, view: Callable[[], Any]) -> Response:
    """Answer with `view()` once per key of this caller on this endpoint, then with its replay.

    Raise InvalidIdempotencyKey for a malformed key; KeyRefused while the first request with the
    key runs (409), for another fingerprint (422) or when the keys cannot be reached (503).
    An exception from `view` releases the key and propagates.
    """
    validate_key(key)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"Idempotency-Key longer than {MAX_KEY_LENGTH}")
    g.idempotency_key = key
    keys = current_app.extensions[EXTENSION]
    identity = getattr(g, "identity", None)
    caller = identity.name if identity is not None else ""
    scope = fingerprint_of(caller, request.endpoint or request.path)[:32]
    try:
        hold = keys.acquire(scope, key, fingerprint)
    except IdempotencyConflict as conflict:
        return _conflict_answer(conflict)
    except IdempotencyUnavailable as exc:
        raise KeyRefused(
            503, "idempotency_unavailable", f"idempotency keys unavailable: {exc}"
        ) from exc
    if hold is None:  # Redis is unreachable and [redis] fail_open is set (the guard logged it)
        return make_response(view())
    try:
        response = make_response(keys.run(hold, view))
    except BaseException:
        keys.release(hold)
        raise
    if response.status_code >= 400 or response.is_streamed:
        keys.release(hold)
    else:
        keys.complete(hold, _answer_of(response))
    return response


def _answer_of(response: Response) -> dict:
    headers = [[k, v] for k, v in response.headers.items() if k.lower() in STORED_HEADERS]
    body = response.get_data()
    return {
        "status": response.status_code,
        "headers": headers,
        "body_b64": base64.b64encode(body).decode("ascii"),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }


def _conflict_answer(conflict: IdempotencyConflict) -> Response:
    """Replay a completed key's answer; raise KeyRefused for the other conflicts."""
    if conflict.kind == DUPLICATE_COMPLETED:
        answer = conflict.record["result"]
        response = Response(base64.b64decode(answer["body_b64"]), status=answer["status"])
        for name, value in answer["headers"]:
            response.headers[name] = value
        response.headers["Idempotent-Replayed"] = "true"
        return response
    if conflict.kind == PAYLOAD_MISMATCH:
        raise KeyRefused(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request payload",
        )
    raise KeyRefused(
        409, "request_in_progress", "the first request with this Idempotency-Key still runs"
    )


def _error(status: int, code: str, message: str) -> Response:
    """The API's error shape (as app.views.errors.json_error, which sits above this module)."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response
