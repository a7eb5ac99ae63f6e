"""The demo's orders service holds Idempotency-Keys in the demo Redis; its clients cause events."""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from demo.fleet.order_clients import BULK_SHARE, STALL_MS, place_one, place_stalled, post_order
from tests.fixtures.processes import require_binary

STREAM = "quarterdeck:idem:events"


def _kinds(client: redis.Redis, key: str) -> list[str]:
    return [f[b"kind"].decode() for _, f in client.xrange(STREAM) if f[b"key"] == key.encode()]


def _orders_url(fleet) -> str:
    return next(i.url for i in fleet.instances if i.service == "orders")


def test_orders_runs_a_keyed_order_once_and_reports_the_conflicts(healthy_fleet):
    require_binary("redis-server", "redis-server")
    client = redis.Redis.from_url(healthy_fleet.redis_url)
    url = _orders_url(healthy_fleet)
    order = {"item": "tea", "qty": 2}
    assert post_order(url, "demo-k1", order) == 200
    assert post_order(url, "demo-k1", order) == 200  # replayed
    assert post_order(url, "demo-k1", {**order, "qty": 3}) == 422
    assert _kinds(client, "demo-k1") == ["duplicate_completed", "payload_mismatch"]
    fields = next(f for _, f in client.xrange(STREAM) if f[b"key"] == b"demo-k1")
    assert fields[b"service"] == b"orders"
    assert fields[b"instance"].startswith(b"orders-")


def test_a_bulk_order_retried_past_its_key_ttl_shows_lock_expired(healthy_fleet):
    require_binary("redis-server", "redis-server")
    client = redis.Redis.from_url(healthy_fleet.redis_url)
    chooser = random.Random(7)
    # Draw the client's dice so that this order is a bulk one (the first share of the draw).
    chooser.random = lambda: BULK_SHARE / 2
    urls = [i.url for i in healthy_fleet.instances if i.service == "orders"]
    done = threading.Thread(target=place_one, args=(urls, chooser))
    done.start()
    done.join(30)
    assert not done.is_alive()
    expired = [f for _, f in client.xrange(STREAM) if f[b"kind"] == b"lock_expired"]
    assert len(expired) == 2  # the first run and the client's retry both outlived the key
    assert all(int(f[b"held_ms"]) >= 2500 and f[b"ttl_ms"] == b"1000" for f in expired)
    assert expired[0][b"key"] == expired[1][b"key"]


class _Dice(random.Random):
    """A client's dice with `random()` fixed (choices of URL stay random)."""

    def __init__(self, draw: float):
        super().__init__(11)
        self.draw = draw

    def random(self) -> float:
        return self.draw


def _events(client: redis.Redis, key: str) -> list[dict]:
    return [
        {k.decode(): v.decode() for k, v in f.items()}
        for _, f in client.xrange(STREAM)
        if f[b"key"] == key.encode()
    ]


def _wait_for_kind(client: redis.Redis, key: str, kind: str) -> list[dict]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = _events(client, key)
        if any(e["kind"] == kind for e in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"no {kind} for {key}: {[e['kind'] for e in _events(client, key)]}")


@pytest.mark.parametrize(
    ("draw", "last_kind"),
    [(0.9, "lock_expired"), (0.1, "release_denied")],
    ids=["completes-late", "deadline-passed"],
)
def test_a_stalled_order_loses_its_key_to_the_retry_and_every_event_has_its_trace(
    healthy_fleet, draw, last_kind
):
    require_binary("redis-server", "redis-server")
    client = redis.Redis.from_url(healthy_fleet.redis_url)
    urls = [i.url for i in healthy_fleet.instances if i.service == "orders"]
    key = f"stalled-{last_kind}"
    # draw >= 0.5: no deadline, the frozen instance completes the order late; < 0.5: the
    # order carries a deadline the stall outlasts, so it answers 504 and releases.
    status = place_stalled(urls, key, {"item": "tea", "qty": 1}, _Dice(draw))
    # The retry on the other instance ran it (its downstream calls may fail: a 5xx is an answer).
    assert status not in (0, 409)
    events = _wait_for_kind(client, key, last_kind)
    kinds = [e["kind"] for e in events]
    if last_kind == "lock_expired":
        # The order goes on after the stall (downstream calls), so the frozen watchdog wakes
        # and finds the key gone or taken before the order completes.
        assert "renew_failed" in kinds
    # With the deadline passed the handler answers 504 and releases about 10 ms after the
    # stall: on a busy machine that can come before the watchdog thread gets to run at all.
    frozen = {e["instance"] for e in events if e["kind"] in ("renew_failed", last_kind)}
    assert len(frozen) == 1  # all from the instance that stalled
    for renew in (e for e in events if e["kind"] == "renew_failed"):
        assert int(renew["held_ms"]) >= STALL_MS - 100 and renew["ttl_ms"] == "2000"
    # Each event carries the trace of the request it happened in, the watchdog's too.
    assert all(len(e.get("trace_id", "")) == 32 for e in events), events
    own = {e["trace_id"] for e in events if e["instance"] in frozen}
    assert len(own) == 1  # renew_failed (watchdog thread) and the handler's share one trace
