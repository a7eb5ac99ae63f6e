"""`GET /api/v1/palette`: services, instances, recent traces and actions for what was typed,
over a catalog written the real way and spans stored the real way, on both stores."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from app.factory import create_app
from app.store.catalog import apply_catalog_update
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord
from tests.conftest import sign_in
from tests.traces.trace_builder import checkout, span, store_spans, trace_id

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# A trace whose id starts unlike any other.
REFUND = int("feedface" + "0" * 23 + "2", 16)
HOSTILE = '<img src=x onerror="alert(1)">-svc'


def instance(iid: str, status: str = "passing", address: str = "10.0.0.5") -> InstanceRecord:
    check = CheckRecord(check_id="http", name="http", status=status, output="")
    return InstanceRecord(id=iid, node="node-1", address=address, port=8080, checks=(check,))


def write_catalog(qd, services) -> None:
    with qd.store.session() as db:
        apply_catalog_update(db, "consul", CatalogUpdate(observed_at=NOW, services=services))


@pytest.fixture
def fleet(make_qd, make_user):
    """orders (one instance critical), order-history, payments, a hostile name, and traces."""
    qd = make_qd()
    write_catalog(
        qd,
        (
            ServiceRecord(
                "orders", instances=(instance("orders-1"), instance("orders-2", "critical"))
            ),
            ServiceRecord("order-history", instances=(instance("order-history-1"),)),
            ServiceRecord("payments", instances=(instance("payments-1", address="10.9.8.7"),)),
            ServiceRecord("legacy-orders-bridge", instances=(instance("bridge-1"),)),
            ServiceRecord(HOSTILE, instances=(instance("hostile-1"),)),
        ),
    )
    now_ns = time.time_ns()
    spans = checkout(1, at_ns=now_ns - 60 * 10**9)
    spans += [span(REFUND, 1, service="payments", name="POST /refund", at_ns=now_ns - 30 * 10**9)]
    store_spans(qd.store.engine, spans)
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        make_user(name, role)
    return qd


def client_of(qd, name: str):
    client = create_app(qd=qd).test_client()
    assert sign_in(client, name).status_code == 302
    return client


def results(client, q: str, **params) -> list[dict]:
    response = client.get("/api/v1/palette", query_string={"q": q, **params})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["query"] == q
    return response.json["results"]


def test_a_prefix_finds_the_service_first_then_names_that_contain_it(fleet):
    found = results(client_of(fleet, "vera"), "order")
    services = [r["label"] for r in found if r["kind"] == "service"]
    assert services == ["order-history", "orders", "legacy-orders-bridge"]
    first = found[0]
    assert first["url"] == "/services/order-history" and first["health"] == "passing"
    orders = next(r for r in found if r["label"] == "orders")
    assert orders["health"] == "critical" and "2 instances" in orders["detail"]


def test_the_best_services_come_with_their_map_and_traces_actions(fleet):
    found = results(client_of(fleet, "vera"), "payments")
    actions = {r["label"]: r["url"] for r in found if r["kind"] == "action"}
    assert actions["Open the map focused on payments"] == "/map?service=payments"
    assert actions["Search traces of payments"] == "/traces?service=payments"


def test_instances_match_by_id_node_or_address(fleet):
    client = client_of(fleet, "vera")
    by_id = [r for r in results(client, "orders-2") if r["kind"] == "instance"]
    assert [r["label"] for r in by_id] == ["orders-2"]
    assert by_id[0]["url"].startswith("/services/orders#instance-")
    assert by_id[0]["health"] == "critical"
    by_address = [r["label"] for r in results(client, "10.9.8") if r["kind"] == "instance"]
    assert by_address == ["payments-1"]


def test_drain_is_offered_to_an_operator_and_never_to_a_viewer(fleet):
    operator = results(client_of(fleet, "otto"), "drain orders-2")
    assert [r["label"] for r in operator] == ["Drain orders-2"]
    assert operator[0]["kind"] == "action" and "#instance-" in operator[0]["url"]
    by_name = results(client_of(fleet, "otto"), "orders-2")
    assert any(r["label"] == "Drain orders-2" for r in by_name)
    viewer = client_of(fleet, "vera")
    assert results(viewer, "drain orders-2") == []
    assert not any(r["label"].startswith("Drain") for r in results(viewer, "orders-2"))


def test_traces_are_found_by_id_prefix_and_by_operation(fleet):
    client = client_of(fleet, "vera")
    by_id = [r for r in results(client, trace_id(REFUND)[:10]) if r["kind"] == "trace"]
    assert [r["url"] for r in by_id] == [f"/traces/{trace_id(REFUND)}"]
    by_operation = [r for r in results(client, "checkout") if r["kind"] == "trace"]
    assert [r["url"] for r in by_operation] == [f"/traces/{trace_id(1)}"]
    assert by_operation[0]["label"] == "gateway GET /checkout"
    assert by_operation[0]["health"] == "critical"  # its payments span failed
    assert "1 error span" in by_operation[0]["detail"]


def test_an_empty_text_lists_the_worst_services_and_the_newest_traces(fleet):
    found = results(client_of(fleet, "vera"), "")
    services = [r["label"] for r in found if r["kind"] == "service"]
    assert services[0] == "orders"  # the only critical one
    traces = [r["url"] for r in found if r["kind"] == "trace"]
    assert traces == [f"/traces/{trace_id(REFUND)}", f"/traces/{trace_id(1)}"]


def test_a_map_verb_narrows_to_map_actions(fleet):
    found = results(client_of(fleet, "vera"), "map pay")
    assert [(r["kind"], r["url"]) for r in found] == [("action", "/map?service=payments")]


def test_limit_caps_the_answer_and_wildcards_are_plain_text(fleet):
    client = client_of(fleet, "vera")
    assert len(results(client, "", limit="2")) == 2
    assert results(client, "%") == [] and results(client, "_") == []


def test_fleet_text_comes_back_as_data_for_the_page_to_show_as_text(fleet):
    found = results(client_of(fleet, "vera"), "<img")
    assert found[0]["label"] == HOSTILE
    assert found[0]["url"] == "/services/%3Cimg%20src=x%20onerror=%22alert(1)%22%3E-svc"


def test_bad_input_is_a_400_that_names_the_field(fleet):
    client = client_of(fleet, "vera")
    too_long = client.get("/api/v1/palette", query_string={"q": "x" * 201})
    assert too_long.status_code == 400 and "q must be" in too_long.json["error"]["message"]
    bad_limit = client.get("/api/v1/palette", query_string={"q": "a", "limit": "many"})
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json["error"]["message"]


def test_the_palette_needs_a_signed_in_user_or_a_token(fleet, make_token):
    anonymous = create_app(qd=fleet).test_client().get("/api/v1/palette?q=orders")
    assert anonymous.status_code == 401
    token = make_token("ci", "viewer")
    with_token = (
        create_app(qd=fleet)
        .test_client()
        .get("/api/v1/palette?q=orders", headers={"Authorization": f"Bearer {token}"})
    )
    assert with_token.status_code == 200 and with_token.json["results"]
