"""Edges from the `[map] edge_query`, asked of a real Prometheus that scraped them."""

from __future__ import annotations

from prometheus_client import Gauge

from app.auth.accounts import create_token
from app.config import MapConfig, PrometheusConfig
from app.factory import create_app
from app.store.catalog import apply_catalog_update
from collectors.base import CatalogUpdate
from tests.fixtures.processes import wait_for
from tests.map.conftest import service_record
from tests.map.test_map_evidence import edges_of


def test_prometheus_edges_join_the_map_and_a_silent_prometheus_is_a_note(
    make_qd, scrape_target_factory, prometheus_factory
):
    target = scrape_target_factory()
    calls = Gauge(
        "mesh_calls_per_second", "Calls between services.", ["caller", "callee"],
        registry=target.registry,
    )  # fmt: skip
    calls.labels("gateway", "billing").set(3.5)
    calls.labels("gateway", "orders").set(1.25)
    calls.labels("gateway", "").set(9)  # no callee: not an edge
    prometheus = prometheus_factory({"mesh": [target.address]})
    wait_for(lambda: len(prometheus.query("mesh_calls_per_second")) == 3, "the edges scraped", 30)
    qd = make_qd(
        prometheus=PrometheusConfig(url=prometheus.url),
        map=MapConfig(
            edge_query="mesh_calls_per_second",
            edge_source_label="caller",
            edge_target_label="callee",
        ),
    )
    with qd.store.session(write=True) as db:
        records = [service_record("gateway", upstreams=["orders", "search"])]
        apply_catalog_update(db, "consul", CatalogUpdate(qd.clock(), records))
        token = create_token(db, "map-reader", "viewer")
    client = create_app(qd=qd).test_client()
    auth = {"Authorization": f"Bearer {token}"}

    body = client.get("/api/v1/map", headers=auth).get_json()
    edges = edges_of(body)
    assert set(edges) == {("gateway", "billing"), ("gateway", "orders"), ("gateway", "search")}
    assert edges[("gateway", "billing")]["evidence"] == ["prometheus"]
    assert edges[("gateway", "billing")]["rate_rps"] == 3.5
    assert edges[("gateway", "billing")]["drift"] == "observed_only"  # gateway is in the mesh
    assert edges[("gateway", "orders")]["evidence"] == ["consul", "prometheus"]
    assert edges[("gateway", "orders")]["drift"] is None
    assert edges[("gateway", "search")]["drift"] == "declared_only"
    assert body["notes"] == []

    prometheus.stop()
    body = client.get("/api/v1/map", headers=auth).get_json()
    assert set(edges_of(body)) == {("gateway", "orders"), ("gateway", "search")}
    assert body["notes"] and body["notes"][0].startswith("prometheus edges missing")
