"""OTLP/HTTP trace ingest: `POST /v1/traces`, answered in the request's own content type.

Ingest is not behind sign-in or CSRF (senders are services, not browsers); it takes its own
bearer token when `[otlp] token_env` names a variable that is set. Spans are written in one
transaction and the export is acknowledged only after the commit, so nothing acknowledged is
lost. Status codes follow the OTLP/HTTP specification: 400 and 413 are not retried by senders,
503 with Retry-After is.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import zlib

from flask import Blueprint, Response, request
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from sqlalchemy.exc import DBAPIError

from app.auth.access import probe
from app.store.traces import write_spans
from app.views.common import qd
from collectors.otlp import DecodedExport, MalformedExport, decode_json, decode_protobuf

bp = Blueprint("otlp", __name__)
log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
DECODERS = {PROTOBUF: decode_protobuf, JSON: decode_json}
READ_CHUNK = 64 * 1024
RETRY_AFTER_S = 5
# google.rpc.Code of each refusal, for the Status body OTLP/HTTP asks for.
RPC_CODES = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}


class _Refused(Exception):
    """The export is answered with an error status and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@bp.post("/v1/traces")
@probe
def export_traces():
    """Store an ExportTraceServiceRequest; answer an ExportTraceServiceResponse."""
    decode = DECODERS.get(request.mimetype)
    content_type = request.mimetype if decode else JSON  # even a 415 is readable
    try:
        _check_token()  # first: a caller without the token learns nothing else
        if decode is None:
            raise _Refused(415, f"Content-Type must be {PROTOBUF} or {JSON}")
        body = _read_body(qd().config.otlp.max_body_mb * 1024 * 1024)
        try:
            decoded = decode(body)
        except MalformedExport as exc:
            raise _Refused(400, str(exc)) from exc
        written = _store(decoded)
    except _Refused as refused:
        return _refusal(refused, content_type)
    metrics = qd().metrics
    metrics.ingest_spans.labels("accepted").inc(written.stored)
    metrics.ingest_spans.labels("duplicate").inc(written.duplicates)
    metrics.ingest_spans.labels("rejected").inc(len(decoded.rejections))
    metrics.ingest_requests.labels("200").inc()
    return _success(decoded, content_type)


def _check_token() -> None:
    expected = os.environ.get(qd().config.otlp.token_env, "")
    if not expected:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise _Refused(401, "send the ingest token as Authorization: Bearer <token>")


def _read_body(limit: int) -> bytes:
    """Read the body (chunked or not), decompressed, refusing more than `limit` bytes of it.

    Decompression is streamed with a cap, so a small gzip bomb costs no more than `limit`.
    """
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip"):
        raise _Refused(415, f"Content-Encoding {encoding[:40]!r} is not supported (gzip is)")
    length = request.content_length
    if length is not None and length > limit:
        raise _Refused(413, f"the body is over the {limit} byte limit")
    # The raw stream: a chunked body has no Content-Length, and Werkzeug's request.stream
    # would then read as empty unless the server marks the input terminated.
    stream = request.environ["wsgi.input"]
    remaining = length  # None: read to the end
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip") else None
    sent = 0
    parts: list[bytes] = []
    size = 0
    while remaining is None or remaining > 0:
        chunk = stream.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        sent += len(chunk)
        if sent > limit:
            raise _Refused(413, f"the body is over the {limit} byte limit")
        if inflater is None:
            parts.append(chunk)
            size += len(chunk)
            continue
        size = _inflate(inflater, chunk, parts, size, limit)
        while inflater.eof and inflater.unused_data:  # a further gzip member
            tail = inflater.unused_data
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            size = _inflate(inflater, tail, parts, size, limit)
    if remaining:
        raise _Refused(400, f"the body ended {remaining} bytes short of its Content-Length")
    if inflater is not None and not inflater.eof:
        raise _Refused(400, "the gzip body is truncated")
    return b"".join(parts)


def _inflate(inflater, data: bytes, parts: list[bytes], size: int, limit: int) -> int:
    try:
        while data:
            out = inflater.decompress(data, limit - size + 1)
            size += len(out)
            if size > limit:
                raise _Refused(413, f"the body is over the {limit} byte limit once decompressed")
            parts.append(out)
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error as exc:
        raise _Refused(400, f"the body is not valid gzip: {exc}") from exc
    return size


def _store(decoded: DecodedExport):
    store = qd().store
    try:
        with store.session(write=True) as db:
            return write_spans(db.connection(), decoded.spans)
    except DBAPIError as exc:
        log.warning("could not store an OTLP export: %s", type(exc.orig or exc).__name__)
        raise _Refused(503, "the store is unavailable; retry later") from exc


def _success(decoded: DecodedExport, content_type: str) -> Response:
    rejected = len(decoded.rejections)
    message = decoded.error_message() if rejected else ""
    if content_type == PROTOBUF:
        answer = ExportTraceServiceResponse()
        if rejected:
            answer.partial_success.rejected_spans = rejected
            answer.partial_success.error_message = message
        return Response(answer.SerializeToString(), 200, content_type=PROTOBUF)
    body: dict = {}
    if rejected:
        # proto3 JSON: int64 as a decimal string.
        body = {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}
    return Response(_json_text(body), 200, content_type=JSON)


def _refusal(refused: _Refused, content_type: str) -> Response:
    qd().metrics.ingest_requests.labels(str(refused.status)).inc()
    code = RPC_CODES.get(refused.status, 2)
    if content_type == PROTOBUF:
        payload = status_pb2.Status(code=code, message=refused.reason).SerializeToString()
    else:
        payload = _json_text({"code": code, "message": refused.reason})
    response = Response(payload, refused.status, content_type=content_type)
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="quarterdeck-ingest"'
    if refused.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _json_text(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"))
