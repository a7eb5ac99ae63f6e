"""Storing what Prometheus and Alertmanager hold now: each snapshot replaces the last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.collection.runner import RECORD_WRITERS
from app.queries.metrics import (
    alerts_by_service,
    push_gauge_by_instance,
    red_by_service,
    scrape_targets,
    service_alerts,
    service_red,
)
from app.queries.services import service_topic
from app.store import Store
from collectors.metrics import (
    AlertSilence,
    AlertsUpdate,
    FiringAlert,
    PushGaugeUpdate,
    PushGaugeValue,
    RedUpdate,
    ScrapeTargetState,
    ServiceRed,
    TargetsUpdate,
)

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def write(store: Store, source: str, record):
    with store.session(write=True) as db:
        return RECORD_WRITERS[type(record)](db, source, record)


def test_red_figures_replace_the_last_pass_and_wake_only_the_services_that_changed(store_url):
    store = Store(store_url)
    try:
        first = RedUpdate(
            T0,
            (
                ServiceRed("orders", 12.5, 0.02, 4.0, 20.0),
                ServiceRed("payments", 3.0, None, None, None),
            ),
        )
        written = write(store, "prometheus", first)
        assert written.counts == {"red_services": 2}
        assert written.topics == {"metrics", service_topic("orders"), service_topic("payments")}

        second = RedUpdate(
            T0 + timedelta(seconds=10),
            (ServiceRed("orders", 12.5, 0.02, 4.0, 20.0), ServiceRed("inventory", 1.0, 0.0)),
        )
        written = write(store, "prometheus", second)
        # orders did not move; payments left; inventory came.
        assert written.topics == {
            "metrics",
            service_topic("payments"),
            service_topic("inventory"),
        }
        with store.session() as db:
            figures = red_by_service(db)
            assert sorted(figures) == ["inventory", "orders"]
            orders = service_red(db, "orders")
            assert (orders.rate_rps, orders.error_ratio, orders.p50_ms, orders.p95_ms) == (
                12.5,
                0.02,
                4.0,
                20.0,
            )
            assert orders.observed_at == T0 + timedelta(seconds=10)
            assert service_red(db, "payments") is None
            assert figures["inventory"].p95_ms is None  # no figure is not a zero
    finally:
        store.dispose()


def test_push_gauge_is_kept_per_instance_and_an_unchanged_pass_wakes_nothing(store_url):
    store = Store(store_url)
    try:
        update = PushGaugeUpdate(
            T0,
            "push_connections_active",
            (PushGaugeValue("push", "p1", 120), PushGaugeValue("push", "p2", 80)),
        )
        assert write(store, "prometheus", update).topics == {"push", service_topic("push")}
        again = PushGaugeUpdate(T0 + timedelta(seconds=10), update.gauge, update.instances)
        assert write(store, "prometheus", again).topics == frozenset()
        with store.session() as db:
            readings = push_gauge_by_instance(db, "push")
        assert [(r.instance, r.connections, r.source) for r in readings] == [
            ("p1", 120.0, "prometheus"),
            ("p2", 80.0, "prometheus"),
        ]
        assert readings[0].observed_at == T0 + timedelta(seconds=10)
    finally:
        store.dispose()


def test_scrape_targets_keep_their_health_and_last_error(store_url):
    store = Store(store_url)
    try:
        update = TargetsUpdate(
            T0,
            (
                ScrapeTargetState("fleet", "127.0.0.1:9", "orders", "down", "connection refused"),
                ScrapeTargetState("fleet", "127.0.0.1:8", "payments", "up"),
            ),
        )
        assert write(store, "prometheus", update).counts == {"targets": 2, "targets_down": 1}
        with store.session() as db:
            targets = scrape_targets(db)
        assert [(t.instance, t.health, t.last_error) for t in targets] == [
            ("127.0.0.1:9", "down", "connection refused"),
            ("127.0.0.1:8", "up", ""),
        ]
    finally:
        store.dispose()


def test_an_alert_from_both_sources_is_one_alert_carrying_the_silence_from_alertmanager(
    store_url,
):
    store = Store(store_url)
    labels = {"alertname": "HighErrors", "service": "orders", "severity": "page"}
    fired_at = T0 - timedelta(minutes=5)
    silence = AlertSilence(
        "s-1", "alice", "deploying", T0 - timedelta(minutes=1), T0 + timedelta(hours=1)
    )
    try:
        write(
            store,
            "prometheus",
            AlertsUpdate(
                T0,
                (
                    FiringAlert(
                        "HighErrors",
                        labels,
                        "orders",
                        {"summary": "5xx > 5%"},
                        "firing",
                        fired_at,
                    ),
                ),
            ),
        )
        written = write(
            store,
            "alertmanager",
            AlertsUpdate(
                T0,
                (
                    FiringAlert(
                        "HighErrors",
                        labels,
                        "orders",
                        {},
                        "suppressed",
                        fired_at,
                        silenced=True,
                        silences=(silence,),
                    ),
                ),
            ),
        )
        assert written.topics == {"alerts", service_topic("orders")}
        with store.session() as db:
            [alert] = service_alerts(db, "orders")
            assert alert.sources == ["alertmanager", "prometheus"]
            assert alert.silenced and alert.state == "suppressed"
            assert alert.silences[0]["created_by"] == "alice"
            assert alert.silences[0]["ends_at"] == "2026-12-02T02:00:00Z"
            assert alert.annotations == {"summary": "5xx > 5%"}
            assert alert.active_at == fired_at

        write(store, "prometheus", AlertsUpdate(T0 + timedelta(seconds=10)))  # resolved
        write(store, "alertmanager", AlertsUpdate(T0 + timedelta(seconds=10)))
        with store.session() as db:
            assert alerts_by_service(db) == {}
    finally:
        store.dispose()
