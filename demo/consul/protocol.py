"""Requests and answers as the Consul double's endpoints see them, and Consul's parameter rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NO_BODY: Any = object()
# Go's time.ParseDuration units, in nanoseconds (both spellings of micro).
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = 1 << 63
_ASCII_DIGITS = frozenset("0123456789")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class HTTPError(Exception):
    """An error answered as Consul does: a status and a plain-text reason."""

    def __init__(
        self, status: int, reason: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class Disconnect(Exception):
    """Drop the connection without answering (the agent went away)."""


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    pairs: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes
    epoch: int
    arg: str = ""
    # The token's acl.Authorizer, set by the dispatcher (an allow-all one when ACLs are off).
    authz: Any = None
    # An injected spurious wake for this blocking query: "same" or "moved" index, or "".
    spurious: str = ""

    def has(self, name: str) -> bool:
        """Whether a query parameter is present, with or without a value."""
        return any(key == name for key, _ in self.pairs)

    def get(self, name: str, default: str = "") -> str:
        """The first value of a query parameter."""
        return next((value for key, value in self.pairs if key == name), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of a repeated query parameter."""
        return [value for key, value in self.pairs if key == name]

    def flag(self, name: str) -> bool:
        """A boolean parameter: present and empty means true, otherwise Go's ParseBool."""
        if not self.has(name):
            return False
        value = self.get(name)
        if value == "" or value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise HTTPError(400, f"Invalid value for ?{name}: {value!r}")

    def token(self) -> str:
        """The ACL token, in Consul's order: ?token, X-Consul-Token, Authorization: Bearer."""
        if self.get("token"):
            return self.get("token")
        if self.headers.get("X-Consul-Token"):
            return self.headers["X-Consul-Token"]
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme == "Bearer" and value.strip():
            return value.strip().split(" ")[0]
        return ""


@dataclass
class Response:
    """What an endpoint answers; body is JSON-able, or NO_BODY for an empty 200."""

    body: Any = NO_BODY
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class Route:
    """An endpoint: a path (prefix when it ends with '/'), its methods and its handler."""

    path: str
    methods: tuple[str, ...]
    handler: Callable[[Request], Response]
    # The token is resolved when acl is set; a (resource, access, name) it returns must be
    # granted, None leaves it to the handler (which filters what the token may not read).
    acl: Callable[[Request], tuple[str, str, str] | None] | None = None
    # Endpoints answered by the servers honour ?dc; agent-local ones do not.
    forwarded: bool = True

    def matches(self, path: str) -> str | None:
        """The path remainder when this route serves the path, else None."""
        if self.path.endswith("/"):
            return path[len(self.path) :] if path.startswith(self.path) else None
        return "" if path == self.path else None


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("30s", "1m30s", "-1.5h", "250µs"); ValueError as Go errs."""
    return parse_go_duration(text) / 1e9


def parse_go_duration(text: str) -> int:
    """Nanoseconds, exactly as Go's time.ParseDuration: [-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+."""
    rest, negative = text, False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0
    while rest:
        if not (rest[0] == "." or rest[0] in _ASCII_DIGITS):
            raise ValueError(f"time: invalid duration {text!r}")
        whole, rest = _leading_digits(rest)
        fraction, scale = 0, 1
        has_fraction = False
        if rest[:1] == ".":
            digits, rest = _leading_digits(rest[1:], overflow_ok=True)
            has_fraction = bool(digits)
            # Go keeps at most the digits that fit in an int64 (leadingFraction).
            for digit in digits:
                if fraction > (_MAX_NS - 1) // 10:
                    break
                fraction, scale = fraction * 10 + int(digit), scale * 10
        if not whole and not has_fraction:
            raise ValueError(f"time: invalid duration {text!r}")
        cut = 0
        while cut < len(rest) and rest[cut] != "." and rest[cut] not in _ASCII_DIGITS:
            cut += 1
        if cut == 0:
            raise ValueError(f"time: missing unit in duration {text!r}")
        unit, rest = rest[:cut], rest[cut:]
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {unit!r} in duration {text!r}")
        value = int(whole or "0")
        if value > _MAX_NS // _UNIT_NS[unit]:
            raise ValueError(f"time: invalid duration {text!r}")
        value *= _UNIT_NS[unit]
        if fraction:
            value += int(float(fraction) * (float(_UNIT_NS[unit]) / scale))
        total += value
        if value > _MAX_NS or total > _MAX_NS:
            raise ValueError(f"time: invalid duration {text!r}")
    if not negative and total > _MAX_NS - 1:
        raise ValueError(f"time: invalid duration {text!r}")
    return -total if negative else total


def _leading_digits(text: str, overflow_ok: bool = False) -> tuple[str, str]:
    end = 0
    while end < len(text) and text[end] in _ASCII_DIGITS:
        end += 1
    digits = text[:end]
    if not overflow_ok and digits and int(digits) > _MAX_NS:
        raise ValueError("time: invalid duration (overflow)")
    return digits, text[end:]


def parse_uint64(text: str) -> int:
    """Go's strconv.ParseUint(text, 10, 64): ASCII digits only, below 2**64."""
    if not text or not set(text) <= _ASCII_DIGITS or int(text) >= 1 << 64:
        raise ValueError(text)
    return int(text)


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(text)


def encode_json(body: Any, pretty: bool) -> bytes:
    """Serialize like Go's encoding/json (compact), or indented for ?pretty."""
    if pretty:
        return (json.dumps(body, indent=4) + "\n").encode()
    return json.dumps(body, separators=(",", ":")).encode()


def acl_filtered(request: Request) -> None:
    """An ACL descriptor that resolves the token and leaves the check to the handler.

    Reads filter what the token may not read; writes require what their body needs.
    """
    return None
