"""Run one business availability probe: an HTTP request judged against what the config expects.

A probe is any object with the `[[probes]]` fields (app.config.ProbeConfig). The result says
in words why a probe failed; header values (which may hold secrets) never appear in it.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

# Bytes of body read for matching; a probe endpoint answers in a few hundred.
MAX_BODY_BYTES = 256 * 1024
MAX_DETAIL_CHARS = 300
MAX_REDIRECTS = 5
_PATH_TOKEN = re.compile(r'\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["([^"\\]*)"\]')


class JsonPathError(ValueError):
    """A JSON path the probe cannot follow."""


@dataclass(frozen=True)
class ProbeResult:
    """What one probe run saw: `ok`, the HTTP status (None without a response) and why."""

    name: str
    service: str
    at: datetime
    ok: bool
    status: int | None
    latency_ms: float
    detail: str


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """Split `$.a.b[0]["c d"]` (or the plain dotted `a.b.0`) into keys and list indexes."""
    text = path.strip()
    if not text:
        raise JsonPathError("is empty")
    if not text.startswith("$"):
        # The simple dotted form: every part is a key, digits index a list.
        parts = text.split(".")
        if any(not p for p in parts):
            raise JsonPathError("has an empty part")
        return tuple(int(p) if p.isascii() and p.isdigit() else p for p in parts)
    tokens: list[str | int] = []
    pos = 1
    while pos < len(text):
        match = _PATH_TOKEN.match(text, pos)
        if match is None:
            raise JsonPathError(f"cannot read it from position {pos} ('{text[pos : pos + 10]}')")
        key, index, quoted = match.groups()
        tokens.append(int(index) if index is not None else key if key is not None else quoted)
        pos = match.end()
    if not tokens:
        raise JsonPathError("names no key ('$' alone is the whole body)")
    return tuple(tokens)


def _follow(document: Any, tokens: tuple[str | int, ...]) -> tuple[bool, Any]:
    for token in tokens:
        if isinstance(token, int) and isinstance(document, list) and token < len(document):
            document = document[token]
        elif isinstance(document, dict) and str(token) in document:
            document = document[str(token)]
        else:
            return False, None
    return True, document


def _bounded(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:80]


def request_headers(probe, environ: Mapping[str, str]) -> dict[str, str]:
    """The probe's headers, secret ones read from the variables `headers_env` names."""
    headers = {"User-Agent": "quarterdeck-probe", "Accept": "*/*", **probe.headers}
    for name, variable in probe.headers_env.items():
        value = environ.get(variable)
        if value is None:
            raise KeyError(variable)
        headers[name] = value
    return headers


def _send(probe, url: str, headers: dict[str, str], deadline: float):
    parts = urlsplit(url)
    timeout = max(deadline - time.monotonic(), 0.001)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = probe.body.encode() if probe.body else None
    try:
        conn.request(probe.method, target, body=body, headers=headers)
        response = conn.getresponse()
        chunks, size = [], 0
        while size < MAX_BODY_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
            chunk = response.read1(min(65536, MAX_BODY_BYTES - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        conn.close()
    return response, b"".join(chunks)


def run_probe(
    probe,
    environ: Mapping[str, str],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ProbeResult:
    """Send the probe's request once and judge the answer; never raises for a failed probe."""
    at = clock()
    started = time.monotonic()
    deadline = started + probe.timeout_ms / 1000

    def result(ok: bool, status: int | None, detail: str) -> ProbeResult:
        latency = round((time.monotonic() - started) * 1000, 1)
        return ProbeResult(probe.name, probe.service, at, ok, status, latency, _bounded(detail))

    try:
        headers = request_headers(probe, environ)
    except KeyError as exc:
        return result(False, None, f"header secret variable {exc.args[0]} is not set")
    url = probe.url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response, body = _send(probe, url, headers, deadline)
            location = response.getheader("Location")
            if not (probe.follow_redirects and 300 <= response.status < 400 and location):
                break
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                return result(False, response.status, "redirected to a non-HTTP URL")
        else:
            return result(False, response.status, f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        return result(False, None, f"timeout after {probe.timeout_ms:,} ms")
    except ConnectionRefusedError:
        return result(False, None, "connection refused")
    except ssl.SSLError as exc:
        return result(False, None, f"TLS error: {exc.reason or exc}")
    except socket.gaierror as exc:
        return result(False, None, f"cannot resolve host: {exc.strerror or exc}")
    except (OSError, http.client.HTTPException) as exc:
        return result(False, None, f"connection failed: {type(exc).__name__} {exc}")
    latency_ms = (time.monotonic() - started) * 1000
    status = response.status
    if status != probe.expect_status:
        return result(False, status, f"status {status}, expected {probe.expect_status}")
    text = body.decode("utf-8", errors="replace")
    if probe.expect_body and probe.expect_body not in text:
        return result(False, status, f"body did not contain {_shown(probe.expect_body)}")
    if probe.expect_json:
        path = probe.expect_json["path"]
        try:
            document = json.loads(text)
        except ValueError:
            return result(False, status, f"body is not JSON, so {path} cannot be read")
        found, value = _follow(document, parse_json_path(path))
        if not found:
            return result(False, status, f"{path} is missing from the body")
        expected = probe.expect_json["equals"]
        if value != expected or isinstance(value, bool) != isinstance(expected, bool):
            return result(False, status, f"{path} was {_shown(value)}, expected {_shown(expected)}")
    if probe.latency_budget_ms and latency_ms > probe.latency_budget_ms:
        return result(
            False,
            status,
            f"{latency_ms:,.0f} ms over the {probe.latency_budget_ms:,} ms budget",
        )
    return result(True, status, f"status {status} in {latency_ms:,.0f} ms")
