"""The asyncio guard on redis.asyncio: the same once-per-key, replay and mismatch behaviour."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis.asyncio

from fleet.idempotency import AsyncIdempotencyGuard, IdempotencyConflict
from tests.fleet.conftest import kinds


def run(coroutine):
    """Run the scenario on a thread of its own: this worker's main thread may already have a
    running event loop (Playwright's sync API keeps one there), where asyncio.run refuses."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_async_guard_runs_once_replays_and_spots_mismatches(redis_url, redis_client):
    executions = []

    async def place_order():
        executions.append(1)
        await asyncio.sleep(0.5)  # outlives the 300 ms TTL: the watchdog task keeps the key
        return {"order": 1}

    async def scenario():
        client = redis.asyncio.Redis.from_url(redis_url)
        guard = AsyncIdempotencyGuard(client, "orders", ttl_ms=300, stream="t:async")

        async def attempt(fingerprint="fp"):
            try:
                return await guard.run("order-1", place_order, fingerprint=fingerprint)
            except IdempotencyConflict as conflict:
                return conflict

        # Which attempt takes the key first is the network's choice, not the list's order.
        results = await asyncio.gather(*(attempt() for _ in range(10)))
        (first,) = [r for r in results if not isinstance(r, IdempotencyConflict)]
        others = [r for r in results if isinstance(r, IdempotencyConflict)]
        replay = await attempt()
        mismatch = await attempt("other")
        await client.aclose()
        return first, others, replay, mismatch

    first, others, replay, mismatch = run(scenario())
    assert executions == [1]
    assert first == {"order": 1}
    assert [o.kind for o in others] == ["duplicate_inflight"] * 9
    assert replay.kind == "duplicate_completed" and replay.stored == {"order": 1}
    assert mismatch.kind == "payload_mismatch"
    assert kinds(redis_client, "t:async") == (
        ["duplicate_inflight"] * 9 + ["duplicate_completed", "payload_mismatch"]
    )


def test_async_guard_without_watchdog_reports_lock_expired(redis_url, redis_client):
    async def scenario():
        client = redis.asyncio.Redis.from_url(redis_url)
        guard = AsyncIdempotencyGuard(
            client, "orders", ttl_ms=100, watchdog=False, stream="t:async2"
        )
        result = await guard.run("order-2", asyncio.sleep, 0.4, "late")
        await client.aclose()
        return result

    assert run(scenario()) == "late"
    assert kinds(redis_client, "t:async2") == ["lock_expired"]


@pytest.mark.parametrize("ttl_ms", [10])
def test_async_guard_refuses_a_ttl_too_short_to_renew(ttl_ms):
    with pytest.raises(ValueError):
        AsyncIdempotencyGuard(redis.asyncio.Redis(), "orders", ttl_ms=ttl_ms)
