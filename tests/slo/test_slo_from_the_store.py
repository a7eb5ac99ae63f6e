"""SLOs judged on rows in a real store (both stores): probe runs, Consul check history and span
rollups, then `GET /api/v1/slo`, the service page and the Overview card. Figures by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.auth.accounts import create_token, create_user
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import ProbeConfig, PrometheusConfig, SloConfig, StaticServiceConfig
from app.factory import create_app
from app.models import HealthTransition, Instance, ProbeResultRow, Service, SpanRedMinute
from app.models.span_red import BUCKET_BOUNDS_MS, BUCKET_COLUMNS
from app.queries.slo import burn_states, burning_services, slo_states
from app.views.slo import current_slo
from tests.conftest import PASSWORD, sign_in

NOW = datetime.now(UTC).replace(microsecond=0)
PROBE = ProbeConfig(name="checkout", service="orders", url="http://127.0.0.1:9/health")
PROBE_SLO = SloConfig(
    service="orders", objective=99.0, window_d=28, sli="probes",
    latency_ms=300, latency_objective=95.0,
)  # fmt: skip


def add_probe_hour(qd) -> None:
    """One probe run a minute for the last hour (k = 0..59 minutes ago, at k min + 30 s).

    Runs k = 0 and 1 failed; every tenth run (k = 0, 10, ..., 50) took 450 ms, the rest 100 ms.
    """
    with qd.store.session(write=True) as db:
        for k in range(60):
            db.add(
                ProbeResultRow(
                    name="checkout", service="orders",
                    at=NOW - timedelta(minutes=k, seconds=30),
                    ok=k not in (0, 1), status=200 if k not in (0, 1) else 500,
                    latency_ms=450.0 if k % 10 == 0 else 100.0, detail="",
                )
            )  # fmt: skip


def fixed_clock(qd):
    qd.clock = lambda: NOW
    return qd


def test_probe_runs_give_the_burn_rate_of_each_window(make_qd):
    qd = fixed_clock(make_qd(probes=(PROBE,), slo=(PROBE_SLO,)))
    add_probe_hour(qd)
    with qd.store.session() as db:
        (state,) = slo_states(db, qd.config, NOW)
    a = state.availability
    # Budget: 1 - 0.99 = 0.01. 5 m holds k = 0..4: 2 bad of 5 = 0.4 -> burn 40.
    # 30 m: k = 0..29, 2 of 30 -> 0.0667 -> 6.67. 1 h and every longer window: 2 of 60 -> 3.33.
    assert a.bad_ratio["5m"] == pytest.approx(0.4)
    assert a.burn_rate["5m"] == pytest.approx(40)
    assert a.burn_rate["30m"] == pytest.approx(2 / 30 / 0.01)
    for window in ("1h", "2h", "6h", "1d", "3d", "28d"):
        assert a.burn_rate[window] == pytest.approx(2 / 60 / 0.01)
    # Fast: 1h 3.33 < 14.4; 6h 3.33 < 6. Slow: 1d 3.33 > 3 and 2h 3.33 > 3 -> slow burn.
    assert a.alert == "slow"
    # 3.33 times the budget over 28 d: nothing left.
    assert a.error_budget_left == 0.0
    assert a.budget_spent == pytest.approx(10 / 3)
    # Latency: 95 % under 300 ms leaves 0.05. 5 m: k = 0 slow of 5 -> 0.2 -> burn 4.
    # 1 h: k = 0, 10, ..., 50 -> 6 of 60 = 0.1 -> burn 2; no alert reaches it.
    lat = state.latency
    assert lat.burn_rate["5m"] == pytest.approx(4)
    assert lat.burn_rate["1h"] == pytest.approx(2)
    assert lat.alert == "slow"  # 3d 2 > 1 and 6h 2 > 1
    assert state.alert == "slow"
    with qd.store.session() as db:
        assert burn_states(db, qd.config, NOW) == {"orders": "slow"}


def add_instance(db, service: Service, sid: str, first_seen_at: datetime) -> Instance:
    instance = Instance(
        service=service, source="consul", source_id=sid, node="n1", health="passing",
        observed_at=NOW, first_seen_at=first_seen_at,
    )  # fmt: skip
    db.add(instance)
    db.flush()
    return instance


def test_check_history_counts_the_seconds_instances_were_critical(make_qd):
    slo = SloConfig(service="orders", objective=90.0, window_d=1, sli="checks")
    qd = make_qd(slo=(slo,))
    with qd.store.session(write=True) as db:
        service = Service(
            name="orders", source="consul", first_seen_at=NOW - timedelta(hours=2),
            observed_at=NOW, changed_at=NOW,
        )  # fmt: skip
        db.add(service)
        one = add_instance(db, service, "orders-1", NOW - timedelta(hours=2))
        add_instance(db, service, "orders-2", NOW - timedelta(hours=2))
        for minutes, before, after in ((90, "passing", "critical"), (60, "critical", "passing")):
            db.add(
                HealthTransition(
                    service_id=service.id, instance_id=one.id, at=NOW - timedelta(minutes=minutes),
                    from_state=before, to_state=after,
                )
            )  # fmt: skip
    with qd.store.session() as db:
        (state,) = slo_states(db, qd.config, NOW)
    ratios = state.availability.bad_ratio
    # 1 h: orders-1 was critical until exactly 60 min ago, passing since: nothing bad.
    assert ratios["1h"] == 0.0
    # 2 h: both instances seen 120 min each = 240 instance-minutes; orders-1 critical 30 of them.
    assert ratios["2h"] == pytest.approx(30 / 240)
    # Longer windows start before the instances were first seen: still 30 of 240.
    assert ratios["1d"] == pytest.approx(30 / 240)
    # Objective 90 %: budget 0.1 -> burn 1.25 over 2 h and 1 d; 0 over 1 h.
    assert state.availability.burn_rate["2h"] == pytest.approx(1.25)
    assert state.availability.error_budget_left == 0.0  # 1 - 1.25, never below 0
    # 1h/5m and 6h/30m: 1 h and 30 m burn 0, no page. 1d/2h: 1.25 < 3. 3d/6h: both 1.25 > 1
    # (the instances are 2 h old, so 3 d and 6 h hold the same 30 of 240): a slow burn.
    assert [a["long"] for a in state.availability.alerts if a["firing"]] == ["3d"]
    assert state.availability.alert == "slow"


def test_span_rollups_give_errors_and_latency_from_the_histogram(make_qd):
    slo = SloConfig(
        service="orders", objective=99.0, window_d=7, sli="spans", latency_ms=200,
        latency_objective=90.0,
    )  # fmt: skip
    qd = make_qd(slo=(slo,))
    # One minute row 10 minutes ago: 100 spans, 4 errors; 80 in the 100-150 ms bucket, 20 in
    # 150-250 ms. A 200 ms threshold cuts that bucket halfway: (250 - 200) / (250 - 150) = 0.5,
    # so 10 of the 20 count as slower -> 10 of 100.
    buckets = dict.fromkeys(BUCKET_COLUMNS, 0)
    buckets[BUCKET_COLUMNS[BUCKET_BOUNDS_MS.index(150)]] = 80
    buckets[BUCKET_COLUMNS[BUCKET_BOUNDS_MS.index(250)]] = 20
    with qd.store.session(write=True) as db:
        db.add(
            SpanRedMinute(
                minute_at=(NOW - timedelta(minutes=10)).replace(second=0), source="orders",
                target="", count=100, errors=4, duration_sum_ms=0, duration_max_ms=240, **buckets,
            )
        )  # fmt: skip
    with qd.store.session() as db:
        (state,) = slo_states(db, qd.config, NOW)
    assert state.availability.bad_ratio["5m"] is None  # nothing in the last 5 minutes
    assert state.availability.bad_ratio["30m"] == pytest.approx(0.04)
    assert state.availability.burn_rate["30m"] == pytest.approx(4)  # 0.04 / 0.01
    assert state.latency.bad_ratio["1h"] == pytest.approx(0.1)
    assert state.latency.burn_rate["1h"] == pytest.approx(1)  # 0.1 / (1 - 0.9)


def api_slo(client, token: str, query: str = "") -> list[dict]:
    response = client.get(f"/api/v1/slo{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["slo"]


def test_the_api_the_service_page_and_the_overview_show_the_burn(make_qd):
    services = (StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),)
    qd = fixed_clock(make_qd(probes=(PROBE,), slo=(PROBE_SLO,), static_services=services))
    (static,) = [s.collector for s in configured_sources(qd.config, qd.clock) if s.name == "static"]
    assert run_pass(qd, static).ok
    add_probe_hour(qd)
    client = create_app(qd=qd).test_client()
    assert client.get("/api/v1/slo").status_code == 401
    with qd.store.session() as db:
        token = create_token(db, "ci", "viewer")
        create_user(db, "vera", "viewer", PASSWORD)
    (body,) = api_slo(client, token)
    assert body["service"] == "orders"
    assert body["objective"] == 99.0
    assert body["window_d"] == 28
    assert body["sli"] == "probes"
    assert body["error_budget_left"] == 0.0
    assert body["burn_rate"]["5m"] == pytest.approx(40)
    assert body["state"] == "slow"
    assert body["latency"]["threshold_ms"] == 300
    assert body["latency"]["burn_rate"]["1h"] == pytest.approx(2)
    assert api_slo(client, token, "?service=payments") == []

    sign_in(client, "vera")
    page = client.get("/services/orders").get_data(as_text=True)
    assert 'data-slo="orders"' in page
    assert 'data-slo-state="slow"' in page
    assert "slow burn, 1d and 2h both above 3.0×" in page
    assert 'data-burn-window="5m"><span class="num text-warning">40.0' in page
    # 2h is in the holding slow alert (1d and 2h above 3): marked critical.
    assert 'data-burn-window="2h"><span class="num text-critical">3.3' in page
    overview = client.get("/").get_data(as_text=True)
    assert 'data-slo-service="orders"' in overview
    assert "1 SLO · 1 burning" in overview


def test_an_unreachable_prometheus_says_why_and_shows_no_figures(make_qd):
    slo = SloConfig(service="orders", sli="prometheus")
    qd = make_qd(prometheus=PrometheusConfig(url="http://127.0.0.1:9", timeout_s=1), slo=(slo,))

    with qd.store.session() as db:
        (state,) = current_slo(qd, db)
    assert "cannot reach Prometheus" in state.problem
    assert state.alert == "no_data"


def test_burning_services_names_the_slow_burn_only_when_asked_for_it(make_qd):
    qd = make_qd(probes=(PROBE,), slo=(PROBE_SLO,))
    add_probe_hour(qd)
    with qd.store.session() as db:
        assert burning_services(db, NOW, {}, qd.config) == {}  # fast only: none
        found = burning_services(db, NOW, {"severity": "slow"}, qd.config)
    evidence = found["orders"]
    assert evidence["state"] == "slow" and evidence["sli"] == "probes"
    # Probes are no collector source; the probe's own freshness is what a rule checks.
    assert (evidence["sources"], evidence["stale"]) == ([], [])
    # availability 1d/2h (3.33 > 3) and 3d/6h (3.33 > 1); latency 3d/6h (2 > 1).
    assert [(a["objective"], a["long"]) for a in evidence["alerts"]] == [
        ("availability", "1d"), ("availability", "3d"), ("latency", "3d"),
    ]  # fmt: skip
