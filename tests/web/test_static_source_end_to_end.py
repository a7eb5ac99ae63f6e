"""Source → collector → store → page and API, with the static_services source."""

from __future__ import annotations

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import HAProxyConfig, StaticServiceConfig
from app.factory import create_app
from tests.conftest import sign_in

STATIC = (
    StaticServiceConfig(name="orders", instances=("10.0.0.5:8000", "10.0.0.6:8000"), tags=("web",)),
    StaticServiceConfig(name="ledger", instances=("10.0.1.9:9000",)),
)


def collect_all(qd):
    return [
        run_pass(qd, s.collector) for s in configured_sources(qd.config, qd.clock) if s.collector
    ]


def test_static_services_appear_in_the_api_with_unknown_health(make_qd, make_token):
    qd = make_qd(static_services=STATIC)
    assert all(r.ok for r in collect_all(qd))
    app = create_app(qd=qd)
    token = make_token("reader", "viewer")
    client = app.test_client()
    body = client.get("/api/v1/services", headers={"Authorization": f"Bearer {token}"}).json
    by_name = {s["name"]: s for s in body["services"]}
    assert set(by_name) == {"orders", "ledger"}
    orders = by_name["orders"]
    assert orders["health"] == "unknown"
    assert orders["instances"] == {
        "total": 2,
        "passing": 0,
        "warning": 0,
        "critical": 0,
        "maintenance": 0,
    }
    assert (
        orders["tags"] == ["web"]
        and orders["stale"] is False
        and orders["observed_at"].endswith("Z")
    )
    detail = client.get(
        "/api/v1/services/orders", headers={"Authorization": f"Bearer {token}"}
    ).json
    assert [i["id"] for i in detail["instances"]] == ["10.0.0.5:8000", "10.0.0.6:8000"]
    assert (
        detail["instances"][0]["address"] == "10.0.0.5" and detail["instances"][0]["port"] == 8000
    )
    missing = client.get("/api/v1/services/nope", headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_the_sources_page_and_api_show_status_last_success_and_last_error(make_qd, make_user):
    qd = make_qd(
        static_services=STATIC,
        haproxy=(HAProxyConfig(name="edge", stats_url="http://127.0.0.1:1/stats;csv"),),
    )
    collect_all(qd)
    app = create_app(qd=qd)
    make_user("olga", "viewer")
    client = app.test_client()
    sign_in(client, "olga")
    sources = {s["name"]: s for s in client.get("/api/v1/sources").json["sources"]}
    assert sources["static"]["status"] == "ok" and sources["static"]["last_success_at"]
    assert sources["static"]["age_s"] is not None and sources["static"]["last_error"] is None
    assert sources["edge"]["status"] == "error" and sources["edge"]["kind"] == "haproxy"
    assert "stats page http://127.0.0.1:1/stats;csv" in sources["edge"]["last_error"]
    page = client.get("/sources").get_data(as_text=True)
    assert 'data-source="static"' in page and 'data-source-status="ok"' in page
    services_page = client.get("/services").get_data(as_text=True)
    assert 'href="/services/orders"' in services_page and 'data-service="ledger"' in services_page


def test_health_and_readiness_probes_and_own_metrics(make_qd):
    qd = make_qd(static_services=STATIC)
    collect_all(qd)
    client = create_app(qd=qd).test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json["status"] == "ok"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (
        'quarterdeck_collector_duration_seconds_count{kind="static",source="static"} 1.0' in metrics
    )
    assert "quarterdeck_collector_errors_total" in metrics


def test_readiness_fails_when_the_store_is_unreachable(make_qd, tmp_path):
    qd = make_qd(url=f"sqlite:///{tmp_path}/no/such/dir/q.db")
    response = create_app(qd=qd).test_client().get("/readyz")
    assert response.status_code == 503 and response.json["status"] == "unavailable"
