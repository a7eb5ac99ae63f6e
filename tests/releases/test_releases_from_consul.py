"""Releases from the Consul double (both stores): two versions of a service over time, read
through the real collector and the releases job, then the releases key, `GET /api/v1/releases`
and the service page's comparison with its rollback offer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from app.auth.accounts import create_token, create_user
from app.collection.releases import track_releases
from app.collection.runner import run_pass
from app.factory import create_app
from app.models import SpanRedMinute
from app.models.span_red import BUCKET_COLUMNS
from tests.conftest import PASSWORD, sign_in

NOW = datetime.now(UTC).replace(second=0, microsecond=0)  # whole minutes: span rows are
# per minute, so each release's hour holds exactly its own 60 rows.
T0 = NOW - timedelta(hours=2)  # v1 goes out
T1 = NOW - timedelta(hours=1)  # v2 replaces it


def register(double, sid: str, **version) -> None:
    double.register_service(
        "node-a", sid, "orders", address="10.0.0.5", port=8000,
        checks=[{"CheckID": f"{sid}-http", "Name": "http", "Status": "passing"}], **version,
    )  # fmt: skip


def api(client, token, query=""):
    response = client.get(f"/api/v1/releases{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def span_minutes(qd, start: datetime, minutes: int, count: int, errors: int, bucket: int) -> None:
    """`minutes` rows of `count` orders spans each, `errors` of them failed, all in one bucket."""
    with qd.store.session(write=True) as db:
        for m in range(minutes):
            db.add(
                SpanRedMinute(
                    minute_at=(start + timedelta(minutes=m)).replace(second=0), source="orders",
                    target="", count=count, errors=errors, duration_sum_ms=0, duration_max_ms=0,
                    **{**dict.fromkeys(BUCKET_COLUMNS, 0), BUCKET_COLUMNS[bucket]: count},
                )
            )  # fmt: skip


def test_two_versions_over_time_are_two_releases_compared_on_the_service_page(
    double, make_consul_qd, make_collector, collect_until
):
    clock = [T0]
    qd = make_consul_qd()
    qd.clock = lambda: clock[0]
    double.register_node("node-a", "10.0.0.5")
    register(double, "orders-1", meta={"version": "v1"})
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    assert track_releases(qd).ok

    clock[0] = T1
    register(double, "orders-2", tags=["version=v2"])  # the version in a tag this time
    double.deregister_service("orders-1")
    with qd.store.session() as db:
        token = create_token(db, "ci", "viewer")

    def v2_seen():
        return [r["version"] for r in api(create_app(qd=qd).test_client(), token)["releases"]]

    collect_until(qd, collector, lambda: track_releases(qd).ok and "v2" in v2_seen())
    client = create_app(qd=qd).test_client()
    body = api(client, token, "?service=orders")
    v2, v1 = body["releases"]  # newest first
    assert (v1["version"], v1["started_at"], v1["instances"]) == (
        "v1",
        T0.isoformat().replace("+00:00", "Z"),
        0,
    )
    assert (v2["version"], v2["started_at"], v2["instances"]) == (
        "v2",
        T1.isoformat().replace("+00:00", "Z"),
        1,
    )
    assert v1["seen_in"] == ["catalog"] and v1["kv_role"] is None
    assert body["total"] == 2
    # No spans, conflicts or probe runs yet: nothing to call worse.
    assert body["comparison"]["current"]["version"] == "v2"
    assert body["comparison"]["previous"]["version"] == "v1"
    assert body["comparison"]["worse"] is False

    # v1's hour: 60 minutes x 100 spans, 1 error each (1 %), all in the 40-60 ms bucket.
    # v2's hour: 60 x 100, 5 errors each (5 %): 5 > 1.5 x 1 and 5 - 1 >= 1 point -> worse.
    clock[0] = NOW
    span_minutes(qd, T0, 60, 100, 1, BUCKET_COLUMNS.index("b07"))
    span_minutes(qd, T1, 60, 100, 5, BUCKET_COLUMNS.index("b07"))
    comparison = api(client, token, "?service=orders")["comparison"]
    figures = {f["name"]: f for f in comparison["figures"]}
    assert figures["error_ratio"]["previous"] == 0.01
    assert figures["error_ratio"]["current"] == 0.05
    assert figures["error_ratio"]["worse"] is True
    assert figures["p95_ms"]["worse"] is False  # the same bucket both hours
    assert comparison["worse"] is True and comparison["worse_in"] == ["error ratio"]

    with qd.store.session() as db:
        create_user(db, "vera", "viewer", PASSWORD)
        create_user(db, "otto", "operator", PASSWORD)
    sign_in(client, "vera")
    page = client.get("/services/orders").get_data(as_text=True)
    assert 'data-release-compare data-worse="true"' in page
    assert 'data-release-figure="error_ratio" data-worse' in page
    assert "data-rollback " not in page  # a viewer is not offered the action
    operator = create_app(qd=qd).test_client()
    sign_in(operator, "otto")
    page = operator.get("/services/orders").get_data(as_text=True)
    # The releases key names no active and previous release: a rollback could not be planned.
    assert "data-rollback" not in page
    assert "<code>quarterdeck/releases/orders</code> to name the active and previous" in page


def test_the_releases_key_adds_its_history_and_names_active_and_previous(
    double, make_consul_qd, make_collector
):
    qd = make_consul_qd()
    qd.clock = lambda: NOW
    double.register_node("node-a", "10.0.0.5")
    register(double, "orders-1", meta={"version": "v2"})
    record = {
        "active": "v2", "previous": "v1",
        "history": [
            {"version": "v1", "at": "2026-01-12T09:30:00Z", "by": "deploy-bot"},
            {"version": "v2", "at": "2026-02-03T14:05:00Z", "by": "deploy-bot"},
        ],
    }  # fmt: skip
    double.kv_put("quarterdeck/releases/orders", json.dumps(record))
    double.kv_put("quarterdeck/releases/broken", "{not json")
    assert run_pass(qd, make_collector(qd)).ok
    run = track_releases(qd)
    # The broken key is named; the good one is still read.
    assert not run.ok and "quarterdeck/releases/broken: not JSON" in run.error
    with qd.store.session() as db:
        token = create_token(db, "ci", "viewer")
    body = api(create_app(qd=qd).test_client(), token, "?service=orders")
    v2, v1 = body["releases"]
    assert v1 == {
        "service": "orders", "version": "v1", "started_at": "2026-01-12T09:30:00Z",
        "last_seen_at": NOW.isoformat().replace("+00:00", "Z"), "seen_in": ["kv"],
        "by": "deploy-bot", "kv_role": "previous", "instances": 0,
    }  # fmt: skip
    # Seen in both; the key's time is earlier than the instance's first sighting, so it wins.
    assert v2["started_at"] == "2026-02-03T14:05:00Z"
    assert v2["seen_in"] == ["catalog", "kv"] and v2["kv_role"] == "active"
    assert body["comparison"]["current"]["version"] == "v2"


def test_a_bad_limit_is_a_400_naming_it(make_qd):
    qd = make_qd()
    with qd.store.session() as db:
        token = create_token(db, "ci", "viewer")
    response = (
        create_app(qd=qd)
        .test_client()
        .get("/api/v1/releases?limit=x", headers={"Authorization": f"Bearer {token}"})
    )
    assert response.status_code == 400
    assert "limit" in response.json["error"]["message"]


def test_an_in_place_upgrade_starts_its_release_when_the_new_version_is_seen(
    double, make_consul_qd, make_collector, collect_until
):
    # The same instance ID re-registers with the new version, as a rolling deploy does: its
    # first sighting (under v1) says nothing about when v2 went out.
    clock = [T0]
    qd = make_consul_qd()
    qd.clock = lambda: clock[0]
    double.register_node("node-a", "10.0.0.5")
    register(double, "orders-1", meta={"version": "v1"})
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    assert track_releases(qd).ok

    clock[0] = T1
    register(double, "orders-1", meta={"version": "v2"})
    with qd.store.session() as db:
        token = create_token(db, "ci", "viewer")

    def v2_seen():
        return [r["version"] for r in api(create_app(qd=qd).test_client(), token)["releases"]]

    collect_until(qd, collector, lambda: track_releases(qd).ok and "v2" in v2_seen())
    v2, v1 = api(create_app(qd=qd).test_client(), token, "?service=orders")["releases"]
    assert (v1["version"], v1["started_at"]) == ("v1", T0.isoformat().replace("+00:00", "Z"))
    assert (v2["version"], v2["started_at"]) == ("v2", T1.isoformat().replace("+00:00", "Z"))
