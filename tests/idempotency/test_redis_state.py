"""In-flight keys at risk of outliving their TTL, and Redis INFO with stale marking."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import RedisConfig
from app.models import InflightKeyRow, RedisSnapshotRow
from app.queries.sources import source_views
from collectors.redis_idem import started_ms
from tests.idempotency.conftest import drain


def inflight(qd) -> dict[str, InflightKeyRow]:
    with qd.store.session() as db:
        rows = db.scalars(select(InflightKeyRow)).all()
        db.expunge_all()
    return {row.key: row for row in rows}


def test_a_key_whose_holder_ran_longer_than_its_remaining_ttl_is_at_risk(
    idem_qd, make_collector, redis_client
):
    now_ms = int(time.time() * 1000)
    redis_client.set("idem:slow", f"{now_ms - 20_000}:tok1", px=5_000)
    redis_client.set("idem:fresh", f"{now_ms - 100}:tok2", px=30_000)
    redis_client.set(
        "idem:json", json.dumps({"token": "t", "started_ms": now_ms - 60_000}), px=9_000
    )
    redis_client.set("idem:forever", f"{now_ms - 1000}:tok3")  # no TTL: never expires
    redis_client.set("idem:opaque", "just-a-token", px=1_000)  # does not say when it started
    redis_client.set("idem:done", json.dumps({"state": "done", "started_ms": now_ms}), px=9_000)
    redis_client.hset("idem:result", mapping={"status": "200"})
    redis_client.set("other:slow", f"{now_ms - 20_000}:tok", px=1_000)  # outside key_pattern

    drain(idem_qd, make_collector())
    keys = inflight(idem_qd)
    assert set(keys) == {"idem:slow", "idem:fresh", "idem:json", "idem:forever"}
    assert keys["idem:slow"].at_risk and keys["idem:json"].at_risk
    assert not keys["idem:fresh"].at_risk and not keys["idem:forever"].at_risk
    assert keys["idem:forever"].ttl_left_ms == -1
    assert 19_000 <= keys["idem:slow"].running_ms <= 40_000


def test_the_scan_is_bounded_and_says_so(idem_qd, make_collector, redis_client):
    now_ms = int(time.time() * 1000)
    pipe = redis_client.pipeline()
    for i in range(300):
        pipe.set(f"idem:{i}", f"{now_ms}:t", px=60_000)
    pipe.execute()
    drain(idem_qd, make_collector(scan_max_keys=50))
    assert len(inflight(idem_qd)) == 50
    with idem_qd.store.session() as db:
        snapshot = db.get(RedisSnapshotRow, "redis")
        assert snapshot.scanned_keys == 50 and not snapshot.scan_complete


def test_info_basics_are_stored_with_the_stream_backlog(idem_qd, make_collector, redis_client):
    drain(idem_qd, make_collector())
    with idem_qd.store.session() as db:
        snapshot = db.get(RedisSnapshotRow, "redis")
        assert snapshot.role == "master"
        assert snapshot.used_memory > 0 and snapshot.connected_clients >= 1
        assert snapshot.repl_offset is not None
        assert snapshot.stream_length == 0 and snapshot.pending == 0


def test_redis_unreachable_fails_the_pass_and_the_source_goes_stale(make_qd, redis_server):
    qd = make_qd(redis=RedisConfig(url="redis://127.0.0.1:1/0", timeout_s=1))
    source = next(s for s in configured_sources(qd.config, qd.clock) if s.kind == "redis")
    result = run_pass(qd, source.collector)
    assert not result.ok and "Redis at 127.0.0.1:1" in result.error
    with qd.store.session() as db:
        view = next(
            v
            for v in source_views(
                db, configured_sources(qd.config, qd.clock), qd.clock(), qd.unrecorded
            )
            if v.name == "redis"
        )
    assert view.status == "error"


def test_the_start_time_comes_from_a_prefix_or_json_and_nothing_else():
    assert started_ms(b"1733100000000:abc") == 1733100000000
    assert started_ms(json.dumps({"started_ms": 1733100000000}).encode()) == 1733100000000
    assert started_ms(json.dumps({"started_ms": True}).encode()) is None
    assert started_ms(b"abc:1733100000000") is None
    assert started_ms(b"{not json") is None
    assert started_ms(None) is None


def test_a_key_held_by_the_reference_guard_is_read_as_in_flight(
    idem_qd, make_collector, redis_client
):
    from fleet.idempotency.core import completed_value, inflight_value

    redis_client.set("idem:orders:guarded", inflight_value("orders-1", None, 30_000), px=30_000)
    redis_client.set("idem:orders:done", completed_value(None, 5, {"status": 200}), px=30_000)
    drain(idem_qd, make_collector())
    keys = inflight(idem_qd)
    assert set(keys) == {"idem:orders:guarded"}
    assert not keys["idem:orders:guarded"].at_risk
