"""The map's edges say what shows them (traces, Consul, both) and mark drift both ways."""

from __future__ import annotations

from tests.map.conftest import service_record


def edges_of(body: dict) -> dict[tuple[str, str], dict]:
    return {(e["source"], e["target"]): e for e in body["edges"]}


def nodes_of(body: dict) -> dict[str, dict]:
    return {n["id"]: n for n in body["nodes"]}


def call_chain(maker, trace: int, *services: str, error_at: str | None = None):
    """A trace where each service calls the next: server span, client span, next server span."""
    spans = []
    parent = None
    for service in services:
        server = maker.span(trace, service, parent=parent, kind=2, error=service == error_at)
        spans.append(server)
        client = maker.span(trace, service, parent=server, kind=3)
        spans.append(client)
        parent = client
    return spans


def test_traces_alone_make_edges_with_traces_evidence_and_no_drift(api, spans_at, receive, roll_up):
    maker = spans_at()
    receive([s for t in range(6) for s in call_chain(maker, t, "gateway", "orders", "payments")])
    roll_up()
    body = api("/api/v1/map").get_json()
    edges = edges_of(body)
    assert set(edges) == {("gateway", "orders"), ("orders", "payments")}
    edge = edges[("gateway", "orders")]
    assert edge["evidence"] == ["traces"]
    assert edge["drift"] is None
    assert edge["rate_rps"] > 0
    assert edge["error_ratio"] == 0
    assert 7.5 <= edge["p95_ms"] <= 15  # every call took 10 ms: within that bucket's width
    nodes = nodes_of(body)
    assert set(nodes) == {"gateway", "orders", "payments"}
    assert nodes["orders"]["sources"] == ["traces"]
    assert nodes["orders"]["red"]["source"] == "traces"


def test_consul_upstreams_alone_are_declared_only_edges(api, catalog):
    catalog(
        service_record("gateway", upstreams=["orders"]),
        service_record("orders", upstreams=["payments"]),
        service_record("payments"),
    )
    body = api("/api/v1/map").get_json()
    edges = edges_of(body)
    assert set(edges) == {("gateway", "orders"), ("orders", "payments")}
    for edge in edges.values():
        assert edge["evidence"] == ["consul"]
        assert edge["drift"] == "declared_only"
        assert edge["rate_rps"] is None and edge["error_ratio"] is None and edge["p95_ms"] is None
    assert nodes_of(body)["orders"]["health"] == "passing"


def test_an_edge_both_declared_and_traced_has_both_evidence_and_no_drift(
    api, catalog, spans_at, receive, roll_up
):
    catalog(service_record("gateway", upstreams=["orders"]), service_record("orders"))
    maker = spans_at()
    receive([s for t in range(3) for s in call_chain(maker, t, "gateway", "orders")])
    roll_up()
    edge = edges_of(api("/api/v1/map").get_json())[("gateway", "orders")]
    assert edge["evidence"] == ["consul", "traces"]
    assert edge["drift"] is None


def test_a_mesh_service_calling_what_it_does_not_declare_is_observed_only(
    api, catalog, spans_at, receive, roll_up
):
    catalog(
        service_record("gateway", upstreams=["orders"]),
        service_record("orders"),
        service_record("search"),
    )
    maker = spans_at()
    receive(call_chain(maker, 1, "gateway", "search") + call_chain(maker, 2, "orders", "search"))
    roll_up()
    edges = edges_of(api("/api/v1/map").get_json())
    assert edges[("gateway", "search")]["drift"] == "observed_only"
    assert edges[("gateway", "orders")]["drift"] == "declared_only"
    # orders declares nothing and has no sidecar: it is outside the mesh, nothing to drift from.
    assert edges[("orders", "search")]["drift"] is None


def test_same_service_parent_and_child_make_no_edge(api, spans_at, receive, roll_up):
    maker = spans_at()
    root = maker.span(1, "orders", kind=2)
    inner = maker.span(1, "orders", parent=root, kind=1)
    receive([root, inner])
    roll_up()
    body = api("/api/v1/map").get_json()
    assert body["edges"] == []
    assert [n["id"] for n in body["nodes"]] == ["orders"]


def test_fleet_text_comes_back_as_data(api, spans_at, receive, roll_up):
    maker = spans_at()
    receive(call_chain(maker, 1, "<script>alert(1)</script>", 'or"ders'))
    roll_up()
    response = api("/api/v1/map")
    assert response.mimetype == "application/json"
    edges = edges_of(response.get_json())
    assert ("<script>alert(1)</script>", 'or"ders') in edges
    # JSON, never sniffed as HTML: the page puts the names in as text, not markup.
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_map_needs_a_signed_in_caller(api):
    response = api.client.get("/api/v1/map")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"]
