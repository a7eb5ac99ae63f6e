"""Guards on the session's real Redis, and a way to read back the events they sent."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import redis

from fleet.idempotency import IdempotencyGuard

_streams = itertools.count()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """Return a client of the emptied session Redis, with short timeouts."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    yield client
    client.close()


@pytest.fixture
def make_guard(redis_client: redis.Redis) -> Iterator[Callable[..., IdempotencyGuard]]:
    """Return a factory of guards on one fresh stream (`guard.stream`), closed at the end."""
    stream = f"test:idem:events:{next(_streams)}"
    guards: list[IdempotencyGuard] = []

    def make(service: str = "orders", **options) -> IdempotencyGuard:
        options.setdefault("stream", stream)
        options.setdefault("instance", f"test-{len(guards)}")
        guard = IdempotencyGuard(options.pop("client", redis_client), service, **options)
        guards.append(guard)
        return guard

    yield make
    for guard in guards:
        guard.close()


def events(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """Return every entry of the stream as a dict of text fields."""
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(stream)
    ]


def kinds(client: redis.Redis, stream: str) -> list[str]:
    """Return the `kind` of every entry of the stream, in order."""
    return [entry["kind"] for entry in events(client, stream)]
