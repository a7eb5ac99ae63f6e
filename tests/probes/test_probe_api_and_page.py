"""Probe results as the store keeps them, `GET /api/v1/probes` and the service page, on both
stores: transitions, availability over a window, the verdict, and secrets kept out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.auth.accounts import create_user
from app.collection.probes import run_and_record
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import ProbeConfig, StaticServiceConfig
from app.factory import create_app
from app.models import ProbeResultRow, ProbeState, ProbeTransition
from app.store.probes import record_probe_result
from collectors.probes import ProbeResult
from tests.conftest import PASSWORD, sign_in

SERVICES = (StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),)
SECRET = "Bearer top-secret-4711"


def checkout(url: str, **keys) -> ProbeConfig:
    return ProbeConfig(name="checkout", service="orders", url=url, expect_body="ok", **keys)


def api_probes(client, token: str, query: str = "") -> list[dict]:
    response = client.get(f"/api/v1/probes{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["probes"]


def with_catalog(make_qd, probes):
    qd = make_qd(static_services=SERVICES, probes=probes)
    (static,) = [s.collector for s in configured_sources(qd.config, qd.clock) if s.name == "static"]
    assert run_pass(qd, static).ok
    return qd


def test_a_failing_probe_records_a_transition_and_recovery_another(make_qd, make_token, endpoint):
    probe = checkout(f"{endpoint.url}/health")
    qd = with_catalog(make_qd, (probe,))
    app = create_app(qd=qd)
    token = make_token()
    client = app.test_client()

    assert api_probes(client, token)[0]["state"] == "unknown"
    endpoint.health = (503, "text/plain", "maintenance")
    assert not run_and_record(qd, probe).ok
    (failing,) = api_probes(client, token)
    assert failing["state"] == "failing"
    assert failing["last"]["status"] == 503
    assert failing["last"]["detail"] == "status 503, expected 200"
    assert [(t["from"], t["to"]) for t in failing["transitions"]] == [("unknown", "failing")]

    service = client.get("/api/v1/services/orders", headers={"Authorization": f"Bearer {token}"})
    verdict = service.json["verdict"]
    assert verdict["health"] == "critical"
    said = [d for d in verdict["disagreements"] if d["source"] == "probe:checkout"]
    assert said and "status 503" in said[0]["says"]

    endpoint.health = (200, "text/plain", "ok")
    assert run_and_record(qd, probe).ok
    (passing,) = api_probes(client, token)
    assert passing["state"] == "passing"
    assert passing["availability"] == pytest.approx(0.5)
    assert [(t["from"], t["to"]) for t in passing["transitions"]] == [
        ("failing", "passing"),
        ("unknown", "failing"),
    ]
    service = client.get("/api/v1/services/orders", headers={"Authorization": f"Bearer {token}"})
    assert not [
        d for d in service.json["verdict"]["disagreements"] if d["source"].startswith("probe:")
    ]


def test_availability_is_the_share_of_passing_results_in_the_window(make_qd, make_token):
    probe = checkout("http://127.0.0.1:1/health")
    qd = make_qd(probes=(probe,))
    now = datetime.now(UTC)
    hours_ago_ok = [(30, True), (20, True), (10, False), (5, True), (1, True)]
    with qd.store.session(write=True) as db:
        for hours, ok in hours_ago_ok:
            at = now - timedelta(hours=hours)
            result = ProbeResult("checkout", "orders", at, ok, 200 if ok else 500, 12.0, "x")
            record_probe_result(db, result, timedelta(seconds=30))
    client = create_app(qd=qd).test_client()
    token = make_token()
    # 24 h: -20 ok, -10 failed, -5 ok, -1 ok -> 3 of 4. 12 h: 2 of 3. 6 h: 2 of 2.
    assert api_probes(client, token)[0]["availability"] == pytest.approx(0.75)
    assert api_probes(client, token, "?window_h=12")[0]["availability"] == pytest.approx(2 / 3)
    assert api_probes(client, token, "?window_h=6")[0]["availability"] == pytest.approx(1.0)
    # Transitions in 24 h: passing -> failing at -10 h, failing -> passing at -5 h.
    (body,) = api_probes(client, token)
    assert [(t["from"], t["to"]) for t in body["transitions"]] == [
        ("failing", "passing"),
        ("passing", "failing"),
    ]
    # The last result is an hour old: past three 30 s intervals, so stale.
    assert body["stale"] is True


def test_a_bad_window_is_a_400_naming_it(make_qd, make_token):
    client = create_app(qd=make_qd()).test_client()
    response = client.get(
        "/api/v1/probes?window_h=1d", headers={"Authorization": f"Bearer {make_token()}"}
    )
    assert response.status_code == 400
    assert "window_h" in response.json["error"]["message"]


def test_the_probes_api_needs_a_signed_in_user_or_token(make_qd):
    client = create_app(qd=make_qd()).test_client()
    assert client.get("/api/v1/probes").status_code == 401


def test_header_secrets_never_reach_the_api_the_page_or_the_store(
    make_qd, make_token, signed_in, endpoint, monkeypatch
):
    monkeypatch.setenv("CHECKOUT_TOKEN", SECRET)
    probe = checkout(f"{endpoint.url}/health", headers_env={"Authorization": "CHECKOUT_TOKEN"})
    qd = with_catalog(make_qd, (probe,))
    assert run_and_record(qd, probe).ok
    assert endpoint.seen_headers[-1]["Authorization"] == SECRET
    app = create_app(qd=qd)
    token = make_token()
    client = app.test_client()
    api_text = client.get("/api/v1/probes", headers={"Authorization": f"Bearer {token}"}).get_data(
        as_text=True
    )
    service_text = client.get(
        "/api/v1/services/orders", headers={"Authorization": f"Bearer {token}"}
    ).get_data(as_text=True)
    viewer = app.test_client()

    with qd.store.session() as db:
        create_user(db, "vera", "viewer", PASSWORD)
    sign_in(viewer, "vera")
    page = viewer.get("/services/orders").get_data(as_text=True)
    with qd.store.session() as db:
        stored = [
            repr(row.__dict__)
            for model in (ProbeResultRow, ProbeState, ProbeTransition)
            for row in db.scalars(select(model))
        ]
    assert 'data-probe="checkout"' in page
    for text in (api_text, service_text, page, *stored):
        assert "top-secret-4711" not in text
        assert "CHECKOUT_TOKEN" not in text


def test_the_service_page_shows_the_probe_card_with_its_reason_and_timeline(make_qd, endpoint):
    probe = checkout(f"{endpoint.url}/health")
    qd = with_catalog(make_qd, (probe,))
    endpoint.health = (200, "text/plain", "<script>alert(1)</script> nope")
    run_and_record(qd, probe)
    endpoint.health = (200, "text/plain", "ok")
    run_and_record(qd, probe)
    endpoint.health = (500, "text/plain", "down")
    run_and_record(qd, probe)
    app = create_app(qd=qd)
    client = app.test_client()

    with qd.store.session() as db:
        create_user(db, "vera", "viewer", PASSWORD)
    sign_in(client, "vera")
    page = client.get("/services/orders").get_data(as_text=True)
    assert 'data-probe-state="failing"' in page
    assert "status 500, expected 200" in page
    assert page.count('badge--compact badge--critical" title=') == 2
    assert page.count('badge--compact badge--passing" title=') == 1
    assert 'data-disagreement-source="probe:checkout"' in page
    assert "33.33" in page  # availability: 1 of 3
