"""GET /api/v1/idempotency/conflicts: conflicts and counts per kind, narrowed by the filters."""

from __future__ import annotations

import pytest

from app.factory import create_app
from tests.conftest import sign_in
from tests.idempotency.conftest import STREAM, drain, emit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_796_000_000_000  # 2026-11-30T…Z, in ms


@pytest.fixture
def filled(idem_qd, make_collector, redis_client):
    """Events of two services and three kinds, one malformed, collected into the store."""
    emit(redis_client, 3, service="orders", kind="duplicate_inflight", ts_ms=str(T0))
    emit(redis_client, 2, start=10, service="orders", kind="payload_mismatch",
         ts_ms=str(T0 + 60_000), trace_id=TRACE, fingerprint="sha256:ab")  # fmt: skip
    emit(redis_client, 4, start=20, service="billing", kind="lock_expired", ts_ms=str(T0 + 120_000))
    redis_client.xadd(STREAM, {"service": "billing", "kind": "lock_expired"})  # no key, no ts_ms
    drain(idem_qd, make_collector())
    return idem_qd


@pytest.fixture
def client(filled, make_user):
    app = create_app(qd=filled)
    client = app.test_client()
    assert sign_in(client, make_user("viewer-1", "viewer")).status_code == 302
    return client


def test_conflicts_come_newest_first_with_the_design_fields(client):
    body = client.get("/api/v1/idempotency/conflicts").get_json()
    assert len(body["conflicts"]) == 10
    first = body["conflicts"][0]
    assert {"id", "service", "instance", "key", "kind", "at", "trace_id"} <= set(first)
    ats = [c["at"] for c in body["conflicts"] if not c["malformed"]]
    assert ats == sorted(ats, reverse=True)
    mismatch = next(c for c in body["conflicts"] if c["kind"] == "payload_mismatch")
    assert mismatch["trace_id"] == TRACE
    assert mismatch["at"] == "2026-11-30T00:54:20.000Z"
    assert (
        next(c for c in body["conflicts"] if c["kind"] == "duplicate_inflight")["trace_id"] is None
    )


def test_counts_have_every_kind_and_malformed(client):
    counts = client.get("/api/v1/idempotency/conflicts").get_json()["counts"]
    assert counts == {
        "duplicate_inflight": 3, "duplicate_completed": 0, "payload_mismatch": 2,
        "lock_expired": 4, "renew_failed": 0, "release_denied": 0, "malformed": 1,
    }  # fmt: skip


def test_service_kind_and_since_narrow_both_conflicts_and_counts(client):
    body = client.get("/api/v1/idempotency/conflicts?service=billing").get_json()
    assert {c["service"] for c in body["conflicts"]} == {"billing"}
    assert body["counts"]["lock_expired"] == 4 and body["counts"]["malformed"] == 1
    assert body["counts"]["duplicate_inflight"] == 0

    body = client.get("/api/v1/idempotency/conflicts?kind=payload_mismatch").get_json()
    assert len(body["conflicts"]) == 2 and body["counts"]["payload_mismatch"] == 2
    assert body["counts"]["lock_expired"] == 0

    body = client.get(
        "/api/v1/idempotency/conflicts?since=2026-11-30T00:54:00Z&service=orders"
    ).get_json()
    assert [c["kind"] for c in body["conflicts"]] == ["payload_mismatch"] * 2
    assert body["counts"]["duplicate_inflight"] == 0


def test_limit_and_offset_page_through(client):
    first = client.get("/api/v1/idempotency/conflicts?limit=4").get_json()["conflicts"]
    second = client.get("/api/v1/idempotency/conflicts?limit=4&offset=4").get_json()["conflicts"]
    assert len(first) == len(second) == 4
    assert not {c["id"] for c in first} & {c["id"] for c in second}


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "since"), ("kind=oops", "kind"), ("limit=0", "limit"),
     ("limit=5001", "limit"), ("offset=-1", "offset"), ("limit=١٠", "limit")],
)  # fmt: skip
def test_bad_filters_are_a_400_naming_the_field(client, query, field):
    response = client.get(f"/api/v1/idempotency/conflicts?{query}")
    assert response.status_code == 400
    assert field in response.get_json()["error"]["message"]


def test_the_api_needs_a_signed_in_user_or_token(filled):
    response = create_app(qd=filled).test_client().get("/api/v1/idempotency/conflicts")
    assert response.status_code == 401
