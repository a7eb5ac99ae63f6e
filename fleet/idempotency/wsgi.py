"""WSGI middleware: the `Idempotency-Key` header (IETF httpapi idempotency-key draft) on a guard.

- A request without the header passes through unguarded (or gets 400 with `required=True`).
- A malformed key (not an sf-string or token, empty, over 255 characters) → 400.
- The same key while the first request runs → 409; with another payload → 422.
- The same key and payload after completion → the stored response, with `Idempotent-Replayed: true`.

The payload fingerprint is SHA-256 over method, path, query string and body. What is kept for
replay: the status, the headers named in `stored_headers`, and the body when it is at most
`max_stored_body` bytes (a larger body is kept as its length and digest only; its replay has the
status and headers, an empty body and `Idempotent-Replayed: body-omitted`). A 5xx answer is not
kept: the key is released so the client's retry runs the work again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable

from fleet.idempotency.core import (
    DUPLICATE_COMPLETED,
    PAYLOAD_MISMATCH,
    IdempotencyConflict,
    IdempotencyUnavailable,
    InvalidIdempotencyKey,
    fingerprint_of,
    validate_key,
)
from fleet.idempotency.guard import IdempotencyGuard

HEADER_ENVIRON = "HTTP_IDEMPOTENCY_KEY"
STORED_HEADERS = (
    "content-type",
    "content-language",
    "location",
    "etag",
    "last-modified",
    "cache-control",
)
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~:/=]+")


def parse_key_header(value: str) -> str:
    """Return the key from an `Idempotency-Key` value: an RFC 8941 sf-string, or a bare token."""
    value = value.strip(" \t")
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise InvalidIdempotencyKey("Idempotency-Key: unterminated string")
        inner, out, escaped = value[1:-1], [], False
        for ch in inner:
            if escaped:
                if ch not in '"\\':
                    raise InvalidIdempotencyKey("Idempotency-Key: bad escape in string")
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                raise InvalidIdempotencyKey("Idempotency-Key: stray quote in string")
            else:
                out.append(ch)
        if escaped:
            raise InvalidIdempotencyKey("Idempotency-Key: bad escape in string")
        return validate_key("".join(out))
    if not _TOKEN.fullmatch(value):
        raise InvalidIdempotencyKey("Idempotency-Key must be a quoted string or a token")
    return validate_key(value)


class IdempotencyMiddleware:
    """Guard a WSGI app's unsafe requests by their `Idempotency-Key` header."""

    def __init__(
        self,
        app: Callable,
        guard: IdempotencyGuard,
        *,
        methods: Iterable[str] = ("POST", "PATCH"),
        required: bool = False,
        stored_headers: Iterable[str] = STORED_HEADERS,
        max_stored_body: int = 64 * 1024,
        max_request_body: int = 8 * 1024 * 1024,
    ):
        self.app = app
        self.guard = guard
        self.methods = frozenset(m.upper() for m in methods)
        self.required = required
        self.stored_headers = frozenset(h.lower() for h in stored_headers)
        self.max_stored_body = max_stored_body
        self.max_request_body = max_request_body

    def __call__(self, environ: dict, start_response: Callable):
        if environ.get("REQUEST_METHOD", "GET").upper() not in self.methods:
            return self.app(environ, start_response)
        header = environ.get(HEADER_ENVIRON)
        if header is None:
            if self.required:
                return _problem(start_response, 400, "Idempotency-Key header is required")
            return self.app(environ, start_response)
        try:
            key = parse_key_header(header)
        except InvalidIdempotencyKey as exc:
            return _problem(start_response, 400, str(exc))
        body = _read_body(environ, self.max_request_body)
        if body is None:
            return _problem(start_response, 413, "request body too large to fingerprint")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        fingerprint = fingerprint_of(
            environ.get("REQUEST_METHOD", ""),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
            body,
        )
        try:
            lease = self.guard.acquire(key, fingerprint=fingerprint)
        except IdempotencyConflict as conflict:
            if conflict.kind == DUPLICATE_COMPLETED:
                return _replay(start_response, conflict.record.get("result"))
            if conflict.kind == PAYLOAD_MISMATCH:
                return _problem(
                    start_response,
                    422,
                    "Idempotency-Key was already used with another request payload",
                )
            return _problem(
                start_response,
                409,
                "a request with this Idempotency-Key is still being processed",
                retry_after=1,
            )
        except IdempotencyUnavailable as exc:
            return _problem(
                start_response, 503, f"idempotency store unavailable: {exc}", retry_after=1
            )
        if lease is None:  # Redis is down and the guard fails open
            return self.app(environ, start_response)
        try:
            with self.guard.watching(lease):
                status_line, headers, body = self._respond(environ)
        except BaseException:
            self.guard.release(lease)
            raise
        if int(status_line.split(" ", 1)[0]) >= 500:
            self.guard.release(lease)  # not kept: the client's retry runs the work again
        else:
            self.guard.complete(lease, self._stored_form(status_line, headers, body), encoded=True)
        start_response(status_line, headers)
        return [body]

    def _respond(self, environ: dict) -> tuple[str, list, bytes]:
        captured: dict = {"written": []}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, list(headers)
            return captured["written"].append

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return captured["status"], captured["headers"], b"".join(captured["written"]) + body

    def _stored_form(self, status_line: str, headers: list, body: bytes) -> dict:
        stored = {
            "status": status_line,
            "headers": [[k, v] for k, v in headers if k.lower() in self.stored_headers],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        if len(body) <= self.max_stored_body:
            stored["body_b64"] = base64.b64encode(body).decode("ascii")
        return stored


def _replay(start_response: Callable, stored: dict):
    headers = [(k, v) for k, v in stored["headers"]]
    if "body_b64" in stored:
        body = base64.b64decode(stored["body_b64"])
        headers.append(("Idempotent-Replayed", "true"))
    else:
        body = b""
        headers.append(("Idempotent-Replayed", "body-omitted"))
    headers.append(("Content-Length", str(len(body))))
    start_response(stored["status"], headers)
    return [body]


def _read_body(environ: dict, limit: int) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    stream = environ.get("wsgi.input")
    if stream is None or length <= 0:
        return b""
    return stream.read(length)


def _problem(start_response: Callable, status: int, detail: str, *, retry_after=None):
    titles = {
        400: "Bad Request",
        409: "Conflict",
        413: "Content Too Large",
        422: "Unprocessable Content",
        503: "Service Unavailable",
    }
    body = json.dumps({"title": titles[status], "status": status, "detail": detail}).encode()
    headers = [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body)))]
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    start_response(f"{status} {titles[status]}", headers)
    return [body]
