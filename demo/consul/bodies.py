"""JSON request bodies decoded as Consul's decodeBody does, with Go-like decode errors.

Go's encoding/json matches field names case-insensitively and Consul translates snake_case
keys (lib.TranslateKeys), so "Name", "name" and "tagged_addresses" all find their field. A
value of the wrong JSON type is answered as Go's decoder words it, inside Consul's
"Request decode failed: ..." 400.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from demo.consul.protocol import HTTPError, parse_go_duration

_JSON_TYPES = {
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}


def decode_failed(reason: str) -> HTTPError:
    """Consul's 400 for a body it cannot decode."""
    return HTTPError(400, f"Request decode failed: {reason}")


def decode_object(raw: bytes, struct: str) -> Body:
    """The request body as a JSON object; anything else is a 400."""
    if not raw.strip():
        raise decode_failed("EOF")
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise decode_failed(str(error)) from None
    if not isinstance(value, dict):
        raise decode_failed(
            f"json: cannot unmarshal {_json_type(value)} into Go value of type {struct}"
        )
    return Body(value, struct)


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "value")


def _normal(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


class Body:
    """One decoded JSON object, read field by field with Go's types."""

    def __init__(self, fields: Mapping[str, Any], struct: str) -> None:
        self.struct = struct
        self._fields = {_normal(str(key)): value for key, value in fields.items()}

    def is_empty(self) -> bool:
        """Whether every field is absent or its zero value (Go's reflect.DeepEqual to zero)."""
        return all(value in (None, "", 0, False, [], {}) for value in self._fields.values())

    def has(self, name: str) -> bool:
        """Whether the field is present and not null."""
        return self._fields.get(_normal(name)) is not None

    def raw(self, name: str) -> Any:
        """The field's JSON value, or None."""
        return self._fields.get(_normal(name))

    def string(self, name: str) -> str:
        """A string field ("" when absent)."""
        return self._typed(name, str, "string") or ""

    def integer(self, name: str) -> int:
        """An int field (0 when absent); a fraction or a bool is a decode error."""
        value = self.raw(name)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._wrong(name, value, "int")
        if isinstance(value, float) and not value.is_integer():
            raise self._wrong(name, value, "int")
        return int(value)

    def boolean(self, name: str) -> bool:
        """A bool field (False when absent)."""
        return bool(self._typed(name, bool, "bool"))

    def strings(self, name: str) -> list[str]:
        """A []string field."""
        value = self._typed(name, list, "[]string") or []
        if not all(isinstance(item, str) for item in value):
            raise self._wrong(name, value, "[]string")
        return list(value)

    def string_map(self, name: str) -> dict[str, str]:
        """A map[string]string field."""
        value = self._typed(name, dict, "map[string]string") or {}
        if not all(isinstance(item, str) for item in value.values()):
            raise self._wrong(name, value, "map[string]string")
        return dict(value)

    def object(self, name: str, struct: str) -> Body | None:
        """A nested struct, or None when absent."""
        value = self._typed(name, dict, struct)
        return Body(value, struct) if value is not None else None

    def objects(self, name: str, struct: str) -> list[Body]:
        """A []struct field."""
        value = self._typed(name, list, f"[]{struct}") or []
        if not all(isinstance(item, dict) for item in value):
            raise self._wrong(name, value, f"[]{struct}")
        return [Body(item, struct) for item in value]

    def mapping(self, name: str) -> dict[str, Any] | None:
        """A free-form object field (Proxy, Connect, TaggedAddresses), copied."""
        value = self._typed(name, dict, "map[string]interface {}")
        return json.loads(json.dumps(value)) if value is not None else None

    def duration(self, name: str) -> int:
        """A time.Duration field in nanoseconds: a Go duration string, or a number of ns."""
        value = self.raw(name)
        if value is None or value == "":
            return 0
        if isinstance(value, str):
            try:
                return parse_go_duration(value)
            except ValueError as error:
                raise decode_failed(str(error)) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._wrong(name, value, "time.Duration")
        return int(value)

    def _typed(self, name: str, kind: type, go_type: str) -> Any:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self._wrong(name, value, go_type)
        return value

    def _wrong(self, name: str, value: Any, go_type: str) -> HTTPError:
        return decode_failed(
            f"json: cannot unmarshal {_json_type(value)} into Go struct field "
            f"{self.struct}.{name} of type {go_type}"
        )


def format_go_duration(ns: int) -> str:
    """A duration as Go's time.Duration.String() writes it ("10s", "1m30s", "500ms")."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return sign + text + _trim(rest / 1e9) + "s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")
