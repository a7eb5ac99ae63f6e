"""One execution per key, replays of the stored result, and each conflict kind on the stream."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fleet.idempotency import IdempotencyConflict, InvalidIdempotencyKey, Lease
from tests.fleet.conftest import events, kinds


def test_fifty_concurrent_requests_with_one_key_run_once(make_guard, redis_client):
    guard = make_guard()
    executions = []
    started = threading.Barrier(50)
    refused = []
    all_refused = threading.Event()

    def work():
        executions.append(1)
        # Held until every other request has been turned away (not a fixed sleep: on a loaded
        # machine a late thread would otherwise find the work done and get the replay).
        all_refused.wait(timeout=20)
        return {"order": 1}

    def request():
        started.wait()
        try:
            return guard.run("order-1", work, fingerprint="same")
        except IdempotencyConflict as conflict:
            refused.append(conflict.kind)
            if len(refused) == 49:
                all_refused.set()
            return conflict.kind

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(lambda _: request(), range(50)))

    assert len(executions) == 1
    assert outcomes.count({"order": 1}) == 1
    assert outcomes.count("duplicate_inflight") == 49
    assert kinds(redis_client, guard.stream) == ["duplicate_inflight"] * 49


def test_events_carry_the_design_fields(make_guard, redis_client):
    guard = make_guard(service="payments", instance="pay-1", ttl_ms=5000)
    lease = guard.acquire("k-fields", fingerprint="fp-a")
    with pytest.raises(IdempotencyConflict):
        guard.acquire("k-fields", fingerprint="fp-a")
    guard.release(lease)
    [entry] = events(redis_client, guard.stream)
    assert entry["service"] == "payments"
    assert entry["instance"] == "pay-1"
    assert entry["key"] == "k-fields"
    assert entry["kind"] == "duplicate_inflight"
    assert entry["fingerprint"] == "fp-a"
    assert abs(int(entry["ts_ms"]) - time.time() * 1000) < 60_000
    assert int(entry["held_ms"]) >= 0


def test_a_replay_after_completion_returns_the_stored_result(make_guard, redis_client):
    guard = make_guard()
    calls = []
    result = guard.run(
        "order-2", lambda: calls.append(1) or {"id": 2, "total": "9.50"}, fingerprint="fp"
    )
    with pytest.raises(IdempotencyConflict) as replay:
        guard.run("order-2", lambda: calls.append(1), fingerprint="fp")
    assert replay.value.kind == "duplicate_completed"
    assert replay.value.stored == result == {"id": 2, "total": "9.50"}
    assert calls == [1]
    assert kinds(redis_client, guard.stream) == ["duplicate_completed"]
    ttl = redis_client.ttl(guard.redis_key("order-2"))
    assert 86000 < ttl <= 86400  # result_ttl_s


def test_the_same_key_with_another_payload_is_a_payload_mismatch(make_guard, redis_client):
    guard = make_guard()
    guard.run("order-3", lambda: "first", fingerprint="payload-a")
    with pytest.raises(IdempotencyConflict) as mismatch:
        guard.run("order-3", lambda: "second", fingerprint="payload-b")
    assert mismatch.value.kind == "payload_mismatch"
    assert mismatch.value.stored is None
    assert events(redis_client, guard.stream)[0]["fingerprint"] == "payload-b"


def test_work_that_fails_releases_the_key_for_a_retry(make_guard):
    guard = make_guard()

    def fail():
        raise RuntimeError("payment gateway down")

    with pytest.raises(RuntimeError):
        guard.run("order-4", fail)
    assert guard.run("order-4", lambda: "retried") == "retried"


def test_the_decorator_keys_each_call(make_guard):
    guard = make_guard()
    calls = []

    @guard.idempotent(
        key=lambda order_id, amount: f"charge-{order_id}",
        fingerprint=lambda order_id, amount: str(amount),
    )
    def charge(order_id, amount):
        calls.append(order_id)
        return amount * 2

    assert charge(7, 10) == 20
    with pytest.raises(IdempotencyConflict) as replay:
        charge(7, 10)
    assert replay.value.stored == 20
    with pytest.raises(IdempotencyConflict) as mismatch:
        charge(7, 11)
    assert mismatch.value.kind == "payload_mismatch"
    assert charge(8, 10) == 20
    assert calls == [7, 8]


def test_a_non_owner_release_is_refused(make_guard, redis_client):
    guard = make_guard()
    lease = guard.acquire("order-5")
    impostor = Lease(lease.redis_key, lease.key, '{"token":"not-the-owner"}', None, lease.ttl_ms)
    assert guard.release(impostor) is False
    assert redis_client.get(lease.redis_key).decode() == lease.value
    assert kinds(redis_client, guard.stream) == ["release_denied"]
    assert guard.release(lease) is True
    assert redis_client.exists(lease.redis_key) == 0


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "ünïcode"])
def test_malformed_keys_are_refused(make_guard, bad):
    guard = make_guard()
    with pytest.raises(InvalidIdempotencyKey):
        guard.run(bad, lambda: None)


def test_a_plain_token_from_another_emitter_counts_as_in_flight(make_guard, redis_client):
    guard = make_guard()
    redis_client.set(guard.redis_key("order-6"), "3f2a-go-guard-token", px=5000)
    with pytest.raises(IdempotencyConflict) as conflict:
        guard.run("order-6", lambda: None, fingerprint="fp")
    assert conflict.value.kind == "duplicate_inflight"
