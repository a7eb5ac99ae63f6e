"""Work that outlives its key's TTL: kept alive by the watchdog, or reported as lock_expired."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from fleet.idempotency import IdempotencyConflict
from tests.fleet.conftest import kinds


def _run_slow_order_and_a_late_retry(guard, work_s: float, retry_after_s: float):
    executions = []

    def slow_order():
        executions.append(threading.current_thread().name)
        time.sleep(work_s)
        return "placed"

    first = threading.Thread(target=lambda: guard.run("slow-1", slow_order, fingerprint="p"))
    first.start()
    time.sleep(retry_after_s)
    try:
        guard.run("slow-1", slow_order, fingerprint="p")
    except IdempotencyConflict as conflict:
        retry_outcome = conflict.kind
    else:
        retry_outcome = "ran"
    first.join()
    return executions, retry_outcome


def test_the_watchdog_keeps_the_key_while_work_outlives_the_ttl(make_guard, redis_client):
    guard = make_guard(ttl_ms=300, watchdog=True)
    executions, retry = _run_slow_order_and_a_late_retry(guard, work_s=1.5, retry_after_s=0.9)
    assert len(executions) == 1
    assert retry == "duplicate_inflight"
    assert kinds(redis_client, guard.stream) == ["duplicate_inflight"]


def test_without_the_watchdog_the_key_expires_and_the_work_runs_twice(make_guard, redis_client):
    guard = make_guard(ttl_ms=300, watchdog=False)
    executions, retry = _run_slow_order_and_a_late_retry(guard, work_s=1.5, retry_after_s=0.9)
    assert len(executions) == 2
    assert retry == "ran"
    # Both holders sleep past 300 ms, so each finds its key gone when it completes.
    found = kinds(redis_client, guard.stream)
    assert found == ["lock_expired", "lock_expired"]
    entry = redis_client.xrange(guard.stream)[0][1]
    assert int(entry[b"held_ms"]) >= 1400
    assert entry[b"ttl_ms"] == b"300"


def test_a_renewal_that_finds_the_key_taken_reports_renew_failed(make_guard, redis_client):
    guard = make_guard(ttl_ms=300, watchdog=True)
    stolen = threading.Event()

    def work():
        redis_client.set(guard.redis_key("slow-2"), "someone-else", px=5000)
        stolen.set()
        time.sleep(0.5)
        return "done"

    assert guard.run("slow-2", work) == "done"
    assert stolen.is_set()
    assert kinds(redis_client, guard.stream) == ["renew_failed", "lock_expired"]
    assert redis_client.get(guard.redis_key("slow-2")) == b"someone-else"


def test_the_watchdogs_renew_failed_carries_the_trace_of_the_request(make_guard, redis_client):
    guard = make_guard(ttl_ms=300, watchdog=True)
    tracer = TracerProvider().get_tracer("test")

    def work():
        redis_client.set(guard.redis_key("slow-3"), "someone-else", px=5000)
        time.sleep(0.5)  # the watchdog's thread finds the key taken meanwhile
        return "done"

    with tracer.start_as_current_span("POST /orders") as span:
        guard.run("slow-3", work)
        trace_id = format(span.get_span_context().trace_id, "032x")
    entries = [fields for _, fields in redis_client.xrange(guard.stream)]
    assert [e[b"kind"] for e in entries] == [b"renew_failed", b"lock_expired"]
    assert all(e[b"trace_id"].decode() == trace_id for e in entries)


@pytest.mark.parametrize("ttl_ms", [0, 29])
def test_a_ttl_too_short_to_renew_is_refused(make_guard, ttl_ms):
    with pytest.raises(ValueError, match="ttl_ms"):
        make_guard(ttl_ms=ttl_ms)
