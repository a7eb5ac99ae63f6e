"""Probes inside `quarterdeck serve`'s scheduler: each on its own interval, results arriving
within one interval, a slow probe never holding up another; and the map's colour."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.collection.probes import run_and_record
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.collection.scheduler import CollectionService
from app.config import ProbeConfig, RetentionConfig, StaticServiceConfig
from app.factory import create_app
from app.models import ProbeResultRow, ProbeState
from app.store.probes import record_probe_result
from app.store.retention import prune
from collectors.probes import ProbeResult
from tests.fixtures.processes import wait_for


def results_of(qd, name: str) -> int:
    with qd.store.session() as db:
        return db.scalar(
            select(func.count()).select_from(ProbeResultRow).where(ProbeResultRow.name == name)
        )


def test_each_probe_runs_on_its_own_schedule_and_a_slow_one_delays_no_other(make_qd, endpoint):
    fast = ProbeConfig(
        name="fast", service="orders", url=f"{endpoint.url}/health", interval_s=1, timeout_ms=1000
    )
    slow = ProbeConfig(
        name="slow", service="orders", url=f"{endpoint.url}/slow?s=30", interval_s=60,
        timeout_ms=5000,
    )  # fmt: skip
    qd = make_qd(probes=(slow, fast))
    service = CollectionService(qd)
    service.start()
    try:
        assert service.scheduler.get_job("probe:fast") is not None
        assert service.scheduler.get_job("probe:slow") is not None
        # The fast probe keeps producing results while the slow one waits out its 5 s timeout.
        wait_for(lambda: results_of(qd, "fast") >= 3, "three results of the fast probe", 15)
        assert results_of(qd, "slow") == 0
        wait_for(lambda: results_of(qd, "slow") == 1, "the slow probe's timeout", 30)
    finally:
        service.stop()
    with qd.store.session() as db:
        (state,) = db.scalars(select(ProbeState).where(ProbeState.name == "slow"))
    assert state.state == "failing"
    assert state.last_detail == "timeout after 5,000 ms"


def test_a_result_is_visible_within_one_probe_interval(make_qd, make_token, endpoint):
    probe = ProbeConfig(name="checkout", service="orders", url=f"{endpoint.url}/health")
    qd = make_qd(probes=(probe,))
    client = create_app(qd=qd).test_client()
    headers = {"Authorization": f"Bearer {make_token()}"}
    service = CollectionService(qd)
    service.start()
    try:
        # interval_s is 30: the first run is due at start, so well inside one interval.
        def shown():
            (body,) = client.get("/api/v1/probes", headers=headers).json["probes"]
            return body if body["last"] is not None else None

        body = wait_for(shown, "the probe's first result in the API", 20)
    finally:
        service.stop()
    assert body["state"] == "passing"


def test_a_removed_probe_leaves_no_current_state_behind(make_qd, endpoint):
    probe = ProbeConfig(name="old", service="orders", url=f"{endpoint.url}/nowhere")
    qd = make_qd(probes=(probe,))
    run_and_record(qd, probe)
    later = make_qd(probes=())
    service = CollectionService(later)
    service.start()
    service.stop()
    with later.store.session() as db:
        assert db.scalar(select(func.count()).select_from(ProbeState)) == 0
        assert db.scalar(select(func.count()).select_from(ProbeResultRow)) == 1


def test_a_failing_probe_turns_its_service_red_on_the_map(make_qd, make_token, endpoint):
    probe = ProbeConfig(name="checkout", service="orders", url=f"{endpoint.url}/health")
    qd = make_qd(
        static_services=(StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),),
        probes=(probe,),
    )
    (static,) = [s.collector for s in configured_sources(qd.config, qd.clock) if s.name == "static"]
    assert run_pass(qd, static).ok
    client = create_app(qd=qd).test_client()
    headers = {"Authorization": f"Bearer {make_token()}"}

    def orders_health():
        nodes = client.get("/api/v1/map", headers=headers).json["nodes"]
        return {n["id"]: n["health"] for n in nodes}["orders"]

    before = orders_health()
    endpoint.health = (503, "text/plain", "down")
    run_and_record(qd, probe)
    assert orders_health() == "critical"
    assert before != "critical"
    # A stale failure (no result for three intervals) no longer colours the map.
    with qd.store.session(write=True) as db:
        old = ProbeResult("checkout", "orders", qd.clock().replace(year=2020), False, 503, 1, "x")
        record_probe_result(db, old, timedelta(seconds=30))
    assert orders_health() == before


def test_retention_prunes_old_probe_results_and_transitions(make_qd):
    qd = make_qd()
    now = qd.clock()
    with qd.store.session(write=True) as db:
        for days, ok in ((20, False), (10, True), (1, False)):
            at = now - timedelta(days=days)
            record_probe_result(db, ProbeResult("c", "orders", at, ok, 500, 1, "x"), timedelta(30))
    retention = RetentionConfig(samples_d=14, transitions_d=5)
    with qd.store.session(write=True) as db:
        removed = prune(db, retention, now)
    assert removed["probe_results"] == 1
    assert removed["probe_transitions"] == 2  # unknown->failing at -20 d, failing->passing at -10 d
    with qd.store.session() as db:
        assert db.scalar(select(func.count()).select_from(ProbeResultRow)) == 2
