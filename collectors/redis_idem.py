"""Read the fleet's idempotency events from a Redis Stream, its in-flight keys and INFO.

DESIGN §6: emitters in any language `XADD` entries with `service`, `instance`, `key`, `kind`,
`ts_ms` and optional `trace_id`, `fingerprint`, `held_ms`, `ttl_ms`. This collector reads them
through a consumer group, so an entry is acknowledged (`XACK`) only after the runner has
committed its row (`committed()`), and a crash anywhere leaves it pending to be read again; the
store skips an entry id it already holds, so a restart duplicates nothing. Entries pending on a
consumer that went away are taken over with `XAUTOCLAIM` once idle long enough.

In-flight keys: a bounded `SCAN` of `key_pattern` with `PTTL` and `GET` in one pipeline. A key's
holder says when it started in the value: a JSON object with `started_ms` (Unix milliseconds) and
`"state": "inflight"` (what the reference guard, fleet.idempotency, writes), or the prefix
`"<started_ms>:<token>"` for emitters that keep a plain token. A key is *at risk* when its
remaining TTL is shorter than its holder's running time so far.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import redis

from collectors.base import SourceUnavailable

log = logging.getLogger(__name__)

# DESIGN §6: the conflict kinds an emitter may send.
KINDS = (
    "duplicate_inflight",
    "duplicate_completed",
    "payload_mismatch",
    "lock_expired",
    "renew_failed",
    "release_denied",
)
_KIND_SET = frozenset(KINDS)
REQUIRED_FIELDS = ("service", "instance", "key", "kind", "ts_ms")
# Longest text kept per field: the fleet writes these, so a runaway value must not fill the store.
FINGERPRINT_LIMIT = 128
_STARTED_PREFIX = re.compile(r"^(\d{10,16}):")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_is_trace_id = re.compile(r"[0-9a-f]{32}").fullmatch


class IdemEvent(NamedTuple):
    """One stream entry as stored; `problems` non-empty means it is not a valid event.

    A named tuple, not a dataclass: a busy stream makes tens of thousands a second, and the
    store writes its fields in this order (app/store/idempotency.py).
    """

    entry_id: str
    at_ms: int  # the event's ts_ms, or the entry id's time when ts_ms is missing or odd
    service: str = ""
    instance: str = ""
    key: str = ""
    kind: str = ""
    trace_id: str = ""
    fingerprint: str = ""
    held_ms: int | None = None
    ttl_ms: int | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdemEventsUpdate:
    """Entries read from the stream in one pass (new ones, own pending ones, claimed ones)."""

    stream: str
    observed_at: datetime
    events: Sequence[IdemEvent]


@dataclass(frozen=True)
class InflightKey:
    """An in-flight key sampled by SCAN: how long it has left and how long it has run."""

    key: str
    ttl_left_ms: int  # PTTL: -1 means the key has no expiry
    running_ms: int | None  # None when the value does not say when its holder started
    at_risk: bool


@dataclass(frozen=True)
class RedisSnapshot:
    """Redis INFO basics and the in-flight keys sampled in one pass."""

    observed_at: datetime
    role: str
    used_memory: int | None
    maxmemory: int | None
    connected_clients: int | None
    blocked_clients: int | None
    repl_offset: int | None
    # Master: bytes the furthest-behind replica lags; replica: seconds since the master spoke.
    repl_lag: int | None
    master_link_status: str = ""
    replicas: tuple[dict, ...] = ()
    stream_length: int | None = None
    pending: int | None = None
    inflight: tuple[InflightKey, ...] = ()
    scanned_keys: int = 0
    scan_complete: bool = True


@dataclass
class _Acks:
    ids: list[str] = field(default_factory=list)


class RedisIdemCollector:
    """Collect idempotency events with a consumer group, plus in-flight keys and INFO."""

    kind = "redis"

    def __init__(
        self,
        client: redis.Redis,
        *,
        clock: Callable[[], datetime],
        name: str = "redis",
        stream: str = "quarterdeck:idem:events",
        group: str = "quarterdeck",
        consumer: str = "",
        key_pattern: str = "idem:*",
        batch: int = 1000,
        max_per_pass: int = 50000,
        claim_idle_ms: int = 60000,
        scan_count: int = 200,
        scan_max_keys: int = 1000,
    ) -> None:
        self.client = client
        self.clock = clock
        self.name = name
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"quarterdeck@{socket.gethostname()}"
        self.key_pattern = key_pattern
        self.batch = batch
        self.max_per_pass = max_per_pass
        self.claim_idle_ms = claim_idle_ms
        self.scan_count = scan_count
        self.scan_max_keys = scan_max_keys
        self._group_ready = False
        self._to_ack = _Acks()

    @classmethod
    def from_config(cls, config, clock) -> RedisIdemCollector:
        """Build from a [redis] section (app.config.RedisConfig)."""
        client = redis.Redis.from_url(
            config.url,
            socket_timeout=config.timeout_s,
            socket_connect_timeout=config.timeout_s,
            # Decoded by the parser (hiredis when installed); odd bytes become U+FFFD.
            decode_responses=True,
            encoding_errors="replace",
        )
        return cls(
            client,
            clock=clock,
            stream=config.stream,
            group=config.group,
            consumer=config.consumer,
            key_pattern=config.key_pattern,
            batch=config.batch,
            max_per_pass=config.max_per_pass,
            claim_idle_ms=config.claim_idle_ms,
            scan_max_keys=config.scan_max_keys,
        )

    def collect(self) -> list:
        """Read events, in-flight keys and INFO once; raise SourceUnavailable if Redis fails."""
        observed_at = self.clock()
        try:
            with paused_gc():
                events = self._read_events()
            snapshot = self._snapshot(observed_at)
        except redis.RedisError as exc:
            reason = f"Redis at {self._where()}: {type(exc).__name__}: {exc}"
            raise SourceUnavailable(reason) from exc
        self._to_ack = _Acks([e.entry_id for e in events])
        return [IdemEventsUpdate(self.stream, observed_at, events), snapshot]

    def committed(self) -> None:
        """Acknowledge what the last pass returned, now that its rows are committed."""
        ids, self._to_ack = self._to_ack.ids, _Acks()
        if not ids:
            return
        try:
            # One round trip for the whole pass, in commands of at most 10,000 ids.
            pipe = self.client.pipeline(transaction=False)
            for start in range(0, len(ids), 10000):
                pipe.xack(self.stream, self.group, *ids[start : start + 10000])
            pipe.execute()
        except redis.RedisError as exc:
            # Still pending: read again next pass (or claimed by another), skipped as stored.
            log.warning("could not acknowledge %d entries on %s: %s", len(ids), self.stream, exc)

    def resync(self) -> None:
        """Forget the last pass's ids: its rows were not stored, so they stay pending."""
        self._to_ack = _Acks()

    def _where(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        return kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the stream's start: entries written before the first pass are history too.
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read_events(self) -> list[IdemEvent]:
        try:
            return self._read_entries()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group was deleted behind us: create them again and read once more.
            self._group_ready = False
            return self._read_entries()

    def _read_entries(self) -> list[IdemEvent]:
        self._ensure_group()
        seen: dict[str, IdemEvent] = {}
        # Own pending first (delivered before a crash or a failed write), then others' stale
        # ones, then new ones: "0" re-reads this consumer's pending list, ">" reads new entries.
        for entry_id, fields in (*self._own_pending(), *self._claimed()):
            if entry_id not in seen:
                seen[entry_id] = parse_entry(entry_id, fields)
        while len(seen) < self.max_per_pass:
            count = min(self.batch, self.max_per_pass - len(seen))
            reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count)
            entries = _entries(reply)
            for entry_id, fields in entries:
                entry_id = _text(entry_id)
                if entry_id not in seen:
                    seen[entry_id] = parse_entry(entry_id, fields)
            if len(entries) < count:
                break
        return list(seen.values())

    def _own_pending(self):
        start = "0"
        taken = 0
        while taken < self.max_per_pass:
            reply = self.client.xreadgroup(
                self.group, self.consumer, {self.stream: start}, self.batch
            )
            entries = _entries(reply)
            if not entries:
                return
            for entry_id, fields in entries:
                entry_id = _text(entry_id)
                start = entry_id
                taken += 1
                # An entry deleted while pending comes back with no fields (XADD needs one).
                if fields:
                    yield entry_id, fields
                else:
                    self.client.xack(self.stream, self.group, entry_id)
            if len(entries) < self.batch:
                return

    def _claimed(self):
        start = "0-0"
        taken = 0
        while taken < self.max_per_pass:
            reply = self.client.xautoclaim(
                self.stream, self.group, self.consumer, self.claim_idle_ms, start, self.batch
            )
            next_id, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                taken += 1
                if fields:  # Redis 7 drops deleted entries from the pending list itself
                    yield _text(entry_id), fields
            if _text(next_id) == "0-0" or not entries:
                return
            start = _text(next_id)

    def _snapshot(self, observed_at: datetime) -> RedisSnapshot:
        info = self.client.info()
        inflight, scanned, complete = self._inflight(observed_at)
        stream_length = pending = None
        try:
            stream_length = self.client.xlen(self.stream)
            pending = int(self.client.xpending(self.stream, self.group)["pending"])
        except redis.ResponseError:
            pass
        role = str(info.get("role", ""))
        offset = _int(info.get("master_repl_offset"))
        replicas = tuple(_replicas(info))
        lag = None
        if role == "master" and replicas and offset is not None:
            lag = max(offset - (r.get("offset") or 0) for r in replicas)
        elif role == "slave":
            lag = _int(info.get("master_last_io_seconds_ago"))
            offset = _int(info.get("slave_repl_offset"), offset)
        return RedisSnapshot(
            observed_at=observed_at,
            role=role,
            used_memory=_int(info.get("used_memory")),
            maxmemory=_int(info.get("maxmemory")),
            connected_clients=_int(info.get("connected_clients")),
            blocked_clients=_int(info.get("blocked_clients")),
            repl_offset=offset,
            repl_lag=lag,
            master_link_status=str(info.get("master_link_status", "")),
            replicas=replicas,
            stream_length=stream_length,
            pending=pending,
            inflight=tuple(inflight),
            scanned_keys=scanned,
            scan_complete=complete,
        )

    def _inflight(self, observed_at: datetime) -> tuple[list[InflightKey], int, bool]:
        """SCAN at most scan_max_keys keys; return the in-flight ones, how many, and if all."""
        now_ms = int(observed_at.timestamp() * 1000)
        keys: list[str] = []
        cursor = 0
        while True:
            cursor, batch = self.client.scan(cursor, match=self.key_pattern, count=self.scan_count)
            keys.extend(batch)
            if cursor == 0 or len(keys) >= self.scan_max_keys:
                break
        complete = cursor == 0 and len(keys) <= self.scan_max_keys
        keys = keys[: self.scan_max_keys]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
            pipe.get(key)
        replies = pipe.execute(raise_on_error=False) if keys else []
        found = []
        for index, key in enumerate(keys):
            ttl, value = replies[2 * index], replies[2 * index + 1]
            if isinstance(ttl, Exception) or isinstance(value, Exception) or ttl == -2:
                continue  # another type (a stored result hash) or gone since SCAN
            started = started_ms(value)
            if started is None:
                continue  # not an in-flight key (for example a completed result)
            running = max(0, now_ms - started)
            found.append(InflightKey(_text(key), int(ttl), running, at_risk=0 <= ttl < running))
        return found, len(keys), complete


@contextlib.contextmanager
def paused_gc():
    """Hold off Python's cyclic garbage collector while a batch of entries is read or written.

    A batch makes a few tracked containers per entry (the reply's lists, the field dicts, the
    rows), so thousands of entries set off many collections that each walk the whole heap: about
    a third of a busy pass's CPU. None of them forms a cycle; reference counting frees them as
    usual, and the collector runs again as soon as the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def started_ms(value: str | bytes | None) -> int | None:
    """Read when an in-flight key's holder started from its value; None if it does not say."""
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    match = _STARTED_PREFIX.match(value)
    if match:
        return int(match.group(1))
    if value[:1] == "{":
        try:
            body = json.loads(value)
        except ValueError:
            return None
        started = body.get("started_ms") if isinstance(body, dict) else None
        is_ms = isinstance(started, int) and not isinstance(started, bool) and started > 0
        if is_ms and body.get("state", "inflight") == "inflight":
            return started
    return None


def parse_entry(entry_id: str, fields: dict) -> IdemEvent:
    """Turn a stream entry into an event, keeping what it has and naming what is wrong.

    Fields arrive decoded (the client decodes with errors="replace", so bytes that are not
    UTF-8 show as U+FFFD and are named as a problem).
    """
    # Fast path for what the reference guard writes: every check of `_parse_odd_entry`, in
    # one expression; anything it does not accept goes the long way and gets its problems named.
    get = fields.get
    service = get("service")
    instance = get("instance")
    key = get("key")
    kind = get("kind")
    ts = get("ts_ms")
    trace_id = get("trace_id", "")
    fingerprint = get("fingerprint", "")
    held = get("held_ms")
    ttl = get("ttl_ms")
    if (
        service and instance and key and ts and kind in _KIND_SET
        and ts.isdigit() and ts.isascii() and len(ts) <= 16
        and (not trace_id or _is_trace_id(trace_id))
        and (not held or (held.isdigit() and held.isascii() and len(held) <= 12))
        and (not ttl or (ttl.isdigit() and ttl.isascii() and len(ttl) <= 12))
        and len(service) <= 255 and len(instance) <= 255 and len(key) <= 512
        and len(fingerprint) <= FINGERPRINT_LIMIT
        and "\ufffd" not in service and "\ufffd" not in instance and "\ufffd" not in key
        and "\ufffd" not in fingerprint
    ):  # fmt: skip
        return IdemEvent(
            entry_id, int(ts), service, instance, key, kind, trace_id, fingerprint,
            int(held) if held else None, int(ttl) if ttl else None,
        )  # fmt: skip
    return _parse_odd_entry(entry_id, fields)


def _parse_odd_entry(entry_id: str, fields: dict) -> IdemEvent:
    """Parse an entry field by field, naming each problem (missing, odd or oversized fields)."""
    get = fields.get
    problems = [f"{name} missing" for name in REQUIRED_FIELDS if not get(name)]
    kind = get("kind") or ""
    if kind and kind not in _KIND_SET:
        problems.append(f"unknown kind {kind[:40]!r}")
    ts = get("ts_ms") or ""
    if ts and ts.isascii() and ts.isdigit() and len(ts) <= 16:
        at_ms = int(ts)
    else:
        at_ms = int(entry_id.split("-", 1)[0])
        if ts:
            problems.append("ts_ms is not whole milliseconds")
    held_ms = _millis(get("held_ms"), "held_ms", problems)
    ttl_ms = _millis(get("ttl_ms"), "ttl_ms", problems)
    trace_id = (get("trace_id") or "").lower()
    if trace_id and not _TRACE_ID.match(trace_id):
        problems.append("trace_id is not 32 hex digits")
        trace_id = ""
    service = get("service") or ""
    instance = get("instance") or ""
    key = get("key") or ""
    fingerprint = get("fingerprint") or ""
    if "\ufffd" in service + instance + key + kind + fingerprint:
        problems.append("bytes that are not UTF-8 (replaced)")
    if (
        len(service) > 255 or len(instance) > 255 or len(key) > 512 or len(kind) > 40
        or len(fingerprint) > FINGERPRINT_LIMIT
    ):  # fmt: skip
        service, instance, key = _clip(service, 255), _clip(instance, 255), _clip(key, 512)
        kind, fingerprint = _clip(kind, 40), _clip(fingerprint, FINGERPRINT_LIMIT)
    return IdemEvent(
        entry_id, at_ms, service, instance, key, kind, trace_id, fingerprint, held_ms, ttl_ms,
        tuple(problems),
    )  # fmt: skip


def _millis(value: str | None, name: str, problems: list[str]) -> int | None:
    if not value:
        return None
    if value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    problems.append(f"{name} is not whole milliseconds")
    return None


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _entries(reply) -> list:
    # redis-py (RESP2): [[stream, [(id, fields), ...]]]; an empty read is [] or None.
    if not reply:
        return []
    return list(reply[0][1])


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _int(value, default=None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _replicas(info: dict):
    # INFO replication on a master: slave0:ip=...,port=...,state=online,offset=...,lag=...
    for name in sorted(k for k in info if re.fullmatch(r"slave\d+", str(k))):
        value = info[name]
        if isinstance(value, dict):
            yield {
                "ip": str(value.get("ip", "")),
                "port": _int(value.get("port")),
                "state": str(value.get("state", "")),
                "offset": _int(value.get("offset")),
                "lag_s": _int(value.get("lag")),
            }
