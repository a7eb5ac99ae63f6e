"""A firing alert from a real rule shows on its service; a silence says who set it, until when.

Collector → store → API, with real Prometheus, real Alertmanager and a real metrics target;
stopping Prometheus leaves its figures on the service, marked stale, never zeroed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import AlertmanagerConfig, PrometheusConfig, StaticServiceConfig
from app.factory import create_app
from tests.conftest import sign_in
from tests.fixtures.processes import free_port, wait_for
from tests.web.test_service_pages import element, html_of

SERVICES = (
    StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),
    StaticServiceConfig(name="payments", instances=("10.0.0.6:8000",)),
)
HIGH_ERRORS = {
    "name": "quarterdeck-test",
    "rules": [
        {
            "alert": "HighErrorRatio",
            "expr": (
                "sum by (service) (rate(http_server_request_duration_seconds_count"
                '{http_response_status_code=~"5.."}[10s])) > 0'
            ),
            "for": "0s",
            "labels": {"severity": "page"},
            "annotations": {"summary": "{{ $labels.service }} answers 5xx"},
        }
    ],
}


def sources_of(qd) -> dict:
    return {s.name: s.collector for s in configured_sources(qd.config, qd.clock) if s.collector}


def api(client, token: str, path: str) -> dict:
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def test_a_firing_alert_shows_on_its_service_and_a_stopped_prometheus_leaves_red_stale(
    prometheus_factory, fleet_metrics, make_qd, make_token, make_user
):
    fleet_metrics.serve("orders", per_tick=2, errors_in_ten=5)
    fleet_metrics.serve("payments", per_tick=1)
    dead = f"127.0.0.1:{free_port()}"
    prometheus = prometheus_factory(
        {"fleet": [fleet_metrics.target.address], "gone": [dead]}, rules=[HIGH_ERRORS]
    )
    prometheus.wait_for_target("gone", health="down")
    qd = make_qd(
        static_services=SERVICES, prometheus=PrometheusConfig(prometheus.url, window="10s")
    )
    collectors = sources_of(qd)
    assert run_pass(qd, collectors["static"]).ok
    client, token = create_app(qd=qd).test_client(), make_token("reader", "viewer")

    def orders_alerting():
        assert run_pass(qd, collectors["prometheus"]).ok
        orders = api(client, token, "/api/v1/services/orders")
        return orders if orders["alerts"] and orders["red"] else None

    orders = wait_for(orders_alerting, "the rule to fire and be collected", timeout=60)

    [alert] = orders["alerts"]
    assert alert["name"] == "HighErrorRatio" and alert["state"] == "firing"
    assert alert["labels"]["severity"] == "page"
    assert alert["annotations"]["summary"] == "orders answers 5xx"
    assert alert["active_at"].endswith("Z") and alert["sources"] == ["prometheus"]
    assert alert["silenced"] is False and alert["stale"] is False
    assert orders["red"]["rate_rps"] > 0 and orders["red"]["stale"] is False
    assert api(client, token, "/api/v1/services/payments")["alerts"] == []

    # The pages say it too: on the service's Traffic card and in the Overview's firing alerts.
    make_user("vera", "viewer")
    assert sign_in(client, "vera").status_code == 302
    on_service = element(html_of(client, "/services/orders"), "ul", 'id="alerts"')
    assert 'data-alert="HighErrorRatio"' in on_service and "firing" in on_service
    assert "orders answers 5xx" in on_service
    assert 'data-alert="HighErrorRatio"' not in html_of(client, "/services/payments")
    firing = element(html_of(client, "/"), "section", 'id="firing-alerts"')
    assert 'data-alert="HighErrorRatio"' in firing and 'href="/services/orders"' in firing
    assert "orders answers 5xx" in firing and "/services/payments" not in firing
    sources = {s["name"]: s for s in api(client, token, "/api/v1/sources")["sources"]}
    assert sources["prometheus"]["status"] == "ok"
    assert sources["prometheus"]["kind"] == "prometheus"
    assert sources["prometheus"]["counts"]["alerts_firing"] == 1
    assert sources["prometheus"]["counts"]["red_services"] == 2
    assert sources["prometheus"]["counts"]["targets_down"] == 1
    [warning] = sources["prometheus"]["warnings"]
    assert warning["kind"] == "target_down"
    assert warning["message"].startswith(f"scrape target gone/{dead} is down: ")
    assert "connection refused" in warning["message"]

    prometheus.stop()
    failed = run_pass(qd, collectors["prometheus"])

    assert not failed.ok and failed.error.startswith("cannot reach Prometheus")
    after = api(client, token, "/api/v1/services/orders")
    assert after["red"]["rate_rps"] == orders["red"]["rate_rps"]  # kept, not zeroed
    assert after["red"]["stale"] is True
    assert after["alerts"][0]["name"] == "HighErrorRatio" and after["alerts"][0]["stale"] is True
    sources = {s["name"]: s for s in api(client, token, "/api/v1/sources")["sources"]}
    assert sources["prometheus"]["status"] == "error"
    assert sources["prometheus"]["last_error"].startswith("cannot reach Prometheus")


def test_an_alert_silenced_in_alertmanager_shows_who_silenced_it_and_until_when(
    prometheus_factory, alertmanager_factory, fleet_metrics, make_qd, make_token
):
    fleet_metrics.serve("orders", per_tick=2, errors_in_ten=5)
    alertmanager = alertmanager_factory()
    prometheus = prometheus_factory(
        {"fleet": [fleet_metrics.target.address]},
        rules=[HIGH_ERRORS],
        alertmanagers=[alertmanager.address],
    )
    wait_for(alertmanager.alerts, "Prometheus to send the alert to Alertmanager", timeout=60)
    ends_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    matcher = {"name": "alertname", "value": "HighErrorRatio", "isRegex": False, "isEqual": True}
    silence_id = alertmanager.create_silence([matcher], "alice", "deploying the fix", ends_at)
    qd = make_qd(
        static_services=SERVICES,
        prometheus=PrometheusConfig(prometheus.url, window="10s"),
        alertmanager=AlertmanagerConfig(alertmanager.url),
    )
    collectors = sources_of(qd)
    assert run_pass(qd, collectors["static"]).ok
    client, token = create_app(qd=qd).test_client(), make_token("reader", "viewer")

    def silenced():
        assert run_pass(qd, collectors["prometheus"]).ok
        assert run_pass(qd, collectors["alertmanager"]).ok
        alerts = api(client, token, "/api/v1/services/orders")["alerts"]
        return alerts if alerts and alerts[0]["silenced"] else None

    [alert] = wait_for(silenced, "the silence to show on the alert", timeout=60)

    assert alert["name"] == "HighErrorRatio"
    assert alert["state"] == "suppressed"
    assert alert["sources"] == ["alertmanager", "prometheus"]
    [silence] = alert["silences"]
    assert silence["id"] == silence_id
    assert silence["created_by"] == "alice" and silence["comment"] == "deploying the fix"
    assert silence["ends_at"] == ends_at.isoformat().replace("+00:00", "Z")
    assert silence["matchers"] == [matcher]
    sources = {s["name"]: s for s in api(client, token, "/api/v1/sources")["sources"]}
    assert sources["alertmanager"]["status"] == "ok"
    assert sources["alertmanager"]["kind"] == "alertmanager"
    assert sources["alertmanager"]["counts"] == {"alerts": 1, "alerts_firing": 1}
