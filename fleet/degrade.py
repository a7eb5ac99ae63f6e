"""DegradeSwitch: a service watches its degrade key in Consul KV and asks "is feature X off?".

The key is `quarterdeck/degrade/<service>` (DESIGN §6), JSON
`{"level": "...", "features_off": [...], "reason": "...", "until": "RFC3339", "by": "user"}`.
A daemon thread long-polls it with a Consul blocking query; the answers a service asks for
(`is_off`, `level`, `state`) come from memory and never wait on Consul.

What it does with what it reads:
- a missing key (404) is "not degraded";
- a value that is not such a JSON object is "not degraded", with one warning per bad value;
- past `until` the switch is "not degraded" by itself, whether or not anyone deleted the key;
- while Consul cannot be reached the last answer stays (a `until` in it still expires), and the
  loop retries with a jittered exponential backoff.

Dependencies: the standard library only. Given an address it talks plain HTTP (`http.client`);
given a py-consul `Consul` client instead it reads through `client.kv.get` (give it a client of
its own: a requests session is not safe to share between threads).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

KEY_PREFIX = "quarterdeck/degrade/"
DEFAULT_LEVEL = "degraded"
# Consul's blocking-query guide: rate-limit the loop, even when answers come back at once.
MIN_READ_INTERVAL_S = 0.1
# The server adds up to wait/16 of jitter before it answers a blocking query.
READ_TIMEOUT_SLACK_S = 5.0


class ConsulReadError(Exception):
    """A read of the degrade key that did not give an answer (unreachable, 5xx, 403, ...)."""


@dataclass(frozen=True)
class DegradeState:
    """What a service is told: degraded or not, its level and which features are off."""

    degraded: bool = False
    level: str | None = None
    features_off: frozenset[str] = field(default_factory=frozenset)
    reason: str = ""
    until_at: datetime | None = None
    by: str = ""
    # The key's ModifyIndex this state comes from (0 when there is no key).
    modify_index: int = 0

    def is_off(self, feature: str) -> bool:
        """Tell whether `feature` is switched off."""
        return self.degraded and feature in self.features_off


NOT_DEGRADED = DegradeState()


class InvalidSwitch(ValueError):
    """A degrade key whose value is not the JSON object DESIGN §6 describes."""


def parse_switch(value: bytes | None, modify_index: int = 0) -> DegradeState:
    """Read a degrade key's value; raise InvalidSwitch naming what is wrong."""
    if not value:
        raise InvalidSwitch("the key has no value")
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSwitch(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidSwitch(f"not a JSON object but {type(data).__name__}")
    level = data.get("level")
    if level is None or level == "":
        level = DEFAULT_LEVEL
    if not isinstance(level, str):
        raise InvalidSwitch("level is not a string")
    features = data.get("features_off") or []
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise InvalidSwitch("features_off is not a list of strings")
    for name in ("reason", "by"):
        if not isinstance(data.get(name) or "", str):
            raise InvalidSwitch(f"{name} is not a string")
    return DegradeState(
        degraded=True,
        level=level,
        features_off=frozenset(features),
        reason=data.get("reason") or "",
        until_at=_parse_until(data.get("until")),
        by=data.get("by") or "",
        modify_index=modify_index,
    )


def _parse_until(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidSwitch("until is not an RFC 3339 string")
    try:
        # RFC 3339 allows a lower-case "z"; fromisoformat wants "Z" or an offset.
        moment = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
    except ValueError:
        raise InvalidSwitch(f"until is not an RFC 3339 time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise InvalidSwitch("until has no time zone offset (RFC 3339 requires one)")
    return moment.astimezone(UTC)


class _HttpKV:
    """GET /v1/kv/<key> over plain HTTP, one kept-alive connection, abortable from stop()."""

    def __init__(self, address: str, token: str | None, timeout_s: float) -> None:
        split = urlsplit(address if "://" in address else f"http://{address}")
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(
                f"consul address must be host:port or http(s)://host:port: {address!r}"
            )
        self.scheme, self.host = split.scheme, split.hostname
        self.port = split.port or (443 if split.scheme == "https" else 8500)
        self.token = token
        self.timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def get(self, key: str, index: int, wait_s: int) -> tuple[int, dict | None]:
        path = f"/v1/kv/{quote(key)}"
        if index:
            path += f"?index={index}&wait={wait_s}s"
        headers = {"X-Consul-Token": self.token} if self.token else {}
        connection = self._connect(wait_s)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ConsulReadError(
                f"cannot reach Consul at {self.host}:{self.port}: {exc!r}"
            ) from None
        text = body[:200].decode("utf-8", "replace").strip()
        if response.status == 404:
            return _index(response.getheader("X-Consul-Index")), None
        if response.status != 200:
            raise ConsulReadError(f"Consul answered {response.status}: {text}")
        try:
            [item] = json.loads(body)
            raw = item.get("Value")
            item["Value"] = None if raw is None else base64.b64decode(raw, validate=True)
        except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
            raise ConsulReadError(f"Consul sent a malformed KV answer: {exc}") from None
        return _index(response.getheader("X-Consul-Index")), item

    def _connect(self, wait_s: int) -> http.client.HTTPConnection:
        with self._lock:
            if self._connection is None:
                kind = (
                    http.client.HTTPSConnection
                    if self.scheme == "https"
                    else http.client.HTTPConnection
                )
                self._connection = kind(self.host, self.port, timeout=self.timeout_s)
            # A blocking query answers after up to wait + wait/16.
            self._connection.timeout = wait_s * 17 / 16 + self.timeout_s
            if self._connection.sock is not None:
                self._connection.sock.settimeout(self._connection.timeout)
            return self._connection

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            sock = connection.sock
            if sock is not None:
                # Ends a blocking query that is waiting in another thread.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            connection.close()


class _ClientKV:
    """The same read through a py-consul client (`client.kv.get`)."""

    def __init__(self, client: Any, token: str | None) -> None:
        self.client = client
        self.token = token

    def get(self, key: str, index: int, wait_s: int) -> tuple[int, dict | None]:
        try:
            found_index, item = self.client.kv.get(
                key, index=index or None, wait=f"{wait_s}s", token=self.token
            )
        except Exception as exc:  # py-consul raises requests' and its own errors alike
            raise ConsulReadError(f"Consul read failed: {type(exc).__name__}: {exc}") from None
        return _index(found_index), item

    def close(self) -> None:
        """The client is the caller's: nothing to close."""


def _index(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConsulReadError(f"Consul sent no usable X-Consul-Index ({value!r})") from None


class DegradeSwitch:
    """Watch `quarterdeck/degrade/<service>` in Consul and answer "is feature X off?"."""

    def __init__(
        self,
        consul: str | Any,
        service: str,
        *,
        token: str | None = None,
        wait_s: int = 60,
        prefix: str = KEY_PREFIX,
        on_change: Callable[[DegradeState], object] | None = None,
        retry_min_s: float = 0.25,
        retry_max_s: float = 15.0,
        connect_timeout_s: float = 5.0,
        clock: Callable[[], datetime] | None = None,
        start: bool = True,
    ) -> None:
        """`consul` is an address ("127.0.0.1:8500", "http://host:port") or a py-consul client."""
        if not service or "/" in service:
            raise ValueError(f"service must be a non-empty name without '/': {service!r}")
        if wait_s < 1:
            raise ValueError("wait_s must be at least 1 second")
        self.service = service
        self.key = f"{prefix}{service}"
        self.wait_s = wait_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self._kv = (
            _HttpKV(consul, token, connect_timeout_s)
            if isinstance(consul, str)
            else _ClientKV(consul, token)
        )
        self._on_change = on_change
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._record = NOT_DEGRADED  # the key's last good value, before `until` is applied
        self._announced = NOT_DEGRADED  # the effective state last handed to on_change
        self._index = 0
        self._warned_value: tuple[int, str] | None = None
        self._failing: str | None = None
        self.reads = 0
        self.last_error: str | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"degrade-switch-{service}", daemon=True
        )
        if start:
            self.start()

    # ----- what a service asks --------------------------------------------------------------

    @property
    def state(self) -> DegradeState:
        """A snapshot of the switch now (an expired `until` already counts as restored)."""
        with self._lock:
            record = self._record
        return self._effective(record)

    @property
    def level(self) -> str | None:
        """The degrade level, or None when the service is not degraded."""
        return self.state.level

    @property
    def degraded(self) -> bool:
        """Tell whether the service is degraded now."""
        return self.state.degraded

    def is_off(self, feature: str) -> bool:
        """Tell whether `feature` is switched off now."""
        return self.state.is_off(feature)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the first answer from Consul; tell whether it came."""
        return self._ready.wait(timeout)

    # ----- lifecycle ------------------------------------------------------------------------

    def start(self) -> DegradeSwitch:
        """Start the watch thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop watching (a pending blocking query is abandoned); tell whether the thread ended."""
        self._stop.set()
        self._kv.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> DegradeSwitch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- the watch loop -------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                index, item = self._kv.get(self.key, self._index, self._wait_now())
            except ConsulReadError as exc:
                if self._stop.is_set():
                    return
                failures += 1
                self._failed(str(exc))
                # Consul's api/watch resets its index after an error: a restarted server may
                # have started over, and a stale index would block for the whole wait.
                self._index = 0
                self._settle()
                self._stop.wait(self._backoff(failures))
                continue
            failures = 0
            self._answered(index, item)
            self._settle()
            elapsed = time.monotonic() - started
            if elapsed < MIN_READ_INTERVAL_S:
                self._stop.wait(MIN_READ_INTERVAL_S - elapsed + random.uniform(0, 0.05))

    def _wait_now(self) -> int:
        """The blocking wait: never past the current `until`, so expiry wakes the loop."""
        with self._lock:
            until_at = self._record.until_at
        if until_at is None:
            return self.wait_s
        left = (until_at - self._clock()).total_seconds()
        if left <= 0:
            return self.wait_s  # already expired: nothing to wake for
        return max(1, min(self.wait_s, int(left) + 1))

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.retry_max_s, self.retry_min_s * 2 ** min(failures - 1, 16))
        # Jitter: instances that lost Consul together do not come back in step.
        return random.uniform(ceiling / 2, ceiling)

    def _answered(self, index: int, item: dict | None) -> None:
        self.reads += 1
        if self._failing is not None:
            log.info("degrade switch %s: Consul answers again", self.key)
            self._failing = None
        self.last_error = None
        if index < self._index:
            # Consul: an index that goes backwards means start over from 0.
            self._index = 0
        else:
            # Consul: keep the index at 1 or more (0 would not block).
            self._index = max(index, 1)
        record = self._read_record(item)
        with self._lock:
            self._record = record
        self._ready.set()

    def _read_record(self, item: dict | None) -> DegradeState:
        if item is None:
            return NOT_DEGRADED
        modify_index = item.get("ModifyIndex") or 0
        try:
            return parse_switch(item.get("Value"), modify_index)
        except InvalidSwitch as exc:
            seen = (modify_index, str(exc))
            if self._warned_value != seen:
                self._warned_value = seen
                log.warning(
                    "degrade switch %s (ModifyIndex %s) is ignored: %s", self.key, modify_index, exc
                )
            return NOT_DEGRADED

    def _failed(self, reason: str) -> None:
        self.last_error = reason
        if self._failing != reason:
            log.warning("degrade switch %s: %s; retrying with backoff", self.key, reason)
            self._failing = reason

    def _effective(self, record: DegradeState) -> DegradeState:
        if record.until_at is not None and record.until_at <= self._clock():
            return NOT_DEGRADED
        return record

    def _settle(self) -> None:
        """Hand the effective state to on_change when it differs from the last one handed."""
        state = self.state
        if state == self._announced:
            return
        self._announced = state
        if self._on_change is None:
            return
        try:
            self._on_change(state)
        except Exception:
            log.exception("degrade switch %s: on_change failed", self.key)
