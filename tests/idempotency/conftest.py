"""A real Redis and a collector reading its stream into the test's store."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from app.collection.runner import PassResult, run_pass
from app.config import RedisConfig
from app.context import Quarterdeck
from collectors.redis_idem import RedisIdemCollector

STREAM = "quarterdeck:idem:events"


@pytest.fixture
def redis_client(redis_url) -> redis.Redis:
    """A client of the session's Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def idem_qd(make_qd, redis_url) -> Quarterdeck:
    """A Quarterdeck context whose [redis] section names the fixture's Redis."""
    return make_qd(redis=RedisConfig(url=redis_url))


@pytest.fixture
def make_collector(idem_qd) -> Callable[..., RedisIdemCollector]:
    """Return a factory of collectors on the context's Redis (settings as keywords)."""
    made = []

    def factory(**settings) -> RedisIdemCollector:
        config = RedisConfig(**{"url": idem_qd.config.redis.url, **settings})
        collector = RedisIdemCollector.from_config(config, clock=idem_qd.clock)
        made.append(collector)
        return collector

    yield factory
    for collector in made:
        collector.client.close()


def emit(client: redis.Redis, count: int, *, start: int = 0, **fields) -> list[str]:
    """XADD `count` valid events (keys k<start>… unless given); return their entry ids."""
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + count):
        entry = {
            "service": "orders",
            "instance": "orders-1",
            "key": f"k{i}",
            "kind": "duplicate_inflight",
            "ts_ms": str(now_ms),
            **fields,
        }
        pipe.xadd(STREAM, entry)
    return [i.decode() for i in pipe.execute()]


def drain(qd: Quarterdeck, collector: RedisIdemCollector, *, passes: int = 100) -> list[PassResult]:
    """Run passes until one reads nothing new; fail if that takes more than `passes`."""
    results = []
    for _ in range(passes):
        result = run_pass(qd, collector)
        assert result.ok, result.error
        results.append(result)
        if result.counts.get("events", 0) == 0:
            return results
    raise AssertionError(f"still reading after {passes} passes")
