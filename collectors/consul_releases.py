"""Consul KV: the release records under `quarterdeck/releases/<service>` (DESIGN §6).

Each key holds `{"active": "v2", "previous": "v1", "history": [{"version", "at", "by"}, ...]}`,
written by a deploy tool or by Quarterdeck's rollback. One recursive read returns them all.
A key that is not such an object is reported, not guessed at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import consul
import requests

from collectors.base import SourceUnavailable

PREFIX = "quarterdeck/releases/"


@dataclass(frozen=True)
class ReleaseEntry:
    """One version in a key's history: when it went out and who sent it, if the key says."""

    version: str
    at: datetime | None
    by: str


@dataclass(frozen=True)
class ReleaseKey:
    """A service's release record as its key holds it."""

    service: str
    active: str
    previous: str
    history: tuple[ReleaseEntry, ...]


@dataclass(frozen=True)
class ReleaseKeys:
    """Every release key read, and a reason for each key that could not be read."""

    keys: tuple[ReleaseKey, ...]
    problems: tuple[str, ...]


def read_release_keys(
    url: str, *, token: str | None, datacenter: str = "", verify: bool | str = True, timeout_s=5
) -> ReleaseKeys:
    """Read every key under PREFIX with one recursive GET (py-consul `kv.get(recurse=True)`)."""
    parts = urlsplit(url)
    client = consul.Consul(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (443 if parts.scheme == "https" else 8500),
        scheme=parts.scheme or "http",
        dc=datacenter or None,
        verify=verify,
        connections_timeout=timeout_s,
    )
    # py-consul lets CONSUL_HTTP_TOKEN override the token argument; the config wins.
    client.token = token
    try:
        _, items = client.kv.get(PREFIX, recurse=True)
    except consul.ACLPermissionDenied as exc:
        raise SourceUnavailable(f"Consul refused to read {PREFIX}: ACL permission denied") from exc
    except (consul.ConsulException, requests.RequestException) as exc:
        raise SourceUnavailable(
            f"cannot read {PREFIX} from Consul at {url}: {type(exc).__name__}"
        ) from exc
    finally:
        client.http.session.close()
    keys, problems = [], []
    for item in items or []:
        name = item["Key"][len(PREFIX) :]
        if not name or "/" in name:
            continue  # the folder itself, or a deeper key no service is named by
        try:
            keys.append(parse_release_key(name, item.get("Value") or b""))
        except ValueError as exc:
            problems.append(f"{item['Key']}: {exc}")
    return ReleaseKeys(tuple(keys), tuple(problems))


def parse_release_key(service: str, value: bytes) -> ReleaseKey:
    """Decode one key's JSON; raise ValueError saying what is wrong with it."""
    try:
        body = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    active, previous = body.get("active") or "", body.get("previous") or ""
    if not isinstance(active, str) or not isinstance(previous, str):
        raise ValueError("active and previous must be strings")
    history = body.get("history") or []
    if not isinstance(history, list):
        raise ValueError("history must be a list")
    entries = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
            raise ValueError(f"history[{i}] needs a version string")
        by = entry.get("by") or ""
        entries.append(ReleaseEntry(entry["version"][:100], _time(entry.get("at")), str(by)[:255]))
    return ReleaseKey(service, active[:100], previous[:100], tuple(entries))


def _time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.astimezone(UTC) if at.tzinfo is not None else None
