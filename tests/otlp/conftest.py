"""Ingest tests: the app on both stores, a raw HTTP poster, and readers of what was stored."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from app.models import Span, Trace


@pytest.fixture
def qd(make_qd, store_url):
    """A Quarterdeck context on a fresh store: SQLite, then PostgreSQL."""
    return make_qd(store_url)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def post(
    base_url: str,
    body: bytes | Iterable[bytes],
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    path: str = "/v1/traces",
) -> Answer:
    """POST over real HTTP; an iterable body goes chunked, without Content-Length."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        sent = {"Content-Type": content_type, **(headers or {})}
        if isinstance(body, bytes):
            connection.request("POST", path, body=body, headers=sent)
        else:
            connection.request("POST", path, body=iter(body), headers=sent, encode_chunked=True)
        response = connection.getresponse()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


def stored_spans(qd) -> list[Span]:
    with qd.store.session() as db:
        return list(db.scalars(select(Span).order_by(Span.start_ns, Span.span_id)))


def stored_traces(qd) -> list[Trace]:
    with qd.store.session() as db:
        return list(db.scalars(select(Trace).order_by(Trace.start_ns)))
