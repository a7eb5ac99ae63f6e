"""The Map page on the server: signed in only, and without JavaScript the map as a table."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from tests.map.realistic_map import HOSTILE, SCRIPT, plan_fleet, seed_map_fleet


@pytest.fixture
def fleet(qd):
    """The realistic map fleet, small: a few calls per edge."""
    return seed_map_fleet(qd, plan_fleet(), calls_per_edge=4)


def rows_of(html: str, table_id: str) -> list[str]:
    """Return the text of each body row of a table, tags stripped."""
    body = html.split(f'id="{table_id}"', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    return [
        " ".join(unescape(re.sub(r"<[^>]+>", " ", r.replace("<wbr>", ""))).split()) for r in rows
    ]


def node_ids(html: str) -> set[str]:
    """Return the ids of the node rows of the table."""
    return {unescape(v) for v in re.findall(r'<tr class="[^"]*" data-node="([^"]*)"', html)}


def test_the_map_page_needs_a_signed_in_user(app):
    response = app.test_client().get("/map")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_the_nav_links_to_the_map(signed_in):
    html = signed_in("viewer").get("/").get_data(as_text=True)
    assert re.search(r'<a href="/map"[^>]*>Map</a>', html)


def test_the_page_loads_the_graph_library_and_says_the_graph_needs_javascript(signed_in, fleet):
    response = signed_in("viewer").get("/map")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "/static/vendor/cytoscape-3.34.4.min.js" in html
    assert "/static/vendor/cytoscape-dagre-4.0.1.min.js" in html
    assert "The graph needs JavaScript" in html
    assert 'data-api-url="/api/v1/map"' in html


def test_without_javascript_the_table_lists_the_nodes_and_edges_the_api_returns(signed_in, fleet):
    client = signed_in("viewer")
    api = client.get("/api/v1/map").get_json()
    html = client.get("/map").get_data(as_text=True)
    nodes = rows_of(html, "map-nodes")
    edges = rows_of(html, "map-edges")
    assert len(nodes) == len(api["nodes"]) == len(fleet.services)
    assert len(edges) == len(api["edges"])
    assert any(row.startswith("payments") and "critical" in row for row in nodes)
    # Each edge row names both ends, its evidence and its drift.
    by_pair = {(e["source"], e["target"]): e for e in api["edges"]}
    for caller, callee in fleet.declared_only:
        assert by_pair[(caller, callee)]["drift"] == "declared_only"
        row = next(r for r in edges if r.startswith(f"{caller} → {callee} "))
        assert "declared only" in row and "consul" in row
    failing = next(r for r in edges if r.startswith("shipping → carrier-adapter-ups"))
    assert "traces" in failing and "%" in failing and "ms" in failing


def test_the_table_follows_the_focus_in_the_url(signed_in, fleet):
    client = signed_in("viewer")
    api = client.get("/api/v1/map", query_string={"service": "checkout", "hops": 1}).get_json()
    html = client.get("/map?service=checkout&hops=1").get_data(as_text=True)
    names = node_ids(html)
    assert names == {n["id"] for n in api["nodes"]}
    assert "checkout" in names and "web-gateway" not in names
    # The form shows the focus, and a link goes back to the whole fleet.
    assert re.search(r'name="service" value="checkout"', html)
    assert re.search(r'<option value="1" selected>', html)
    assert re.search(r'data-map-clear-focus href="/map"', html)


def test_only_unhealthy_keeps_the_unhealthy_and_their_neighbours(signed_in, fleet):
    html = signed_in("viewer").get("/map?unhealthy=true").get_data(as_text=True)
    names = node_ids(html)
    assert {"payments", "carrier-adapter-ups", "search-indexer-worker"} <= names
    assert "web-gateway" not in names
    assert re.search(r'name="unhealthy" value="true" checked', html)


def test_a_bad_filter_is_refused_with_the_reason_on_the_page(signed_in, fleet):
    response = signed_in("viewer").get("/map?since=yesterday")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "since must be a duration like 15m" in unescape(html)
    assert 'id="map-error"' in html


def test_an_unknown_focus_says_so(signed_in, fleet):
    response = signed_in("viewer").get("/map?service=no-such-service")
    assert response.status_code == 404
    assert "no service named" in unescape(response.get_data(as_text=True))


def test_hostile_names_in_the_table_are_text(signed_in, fleet):
    html = signed_in("viewer").get("/map").get_data(as_text=True)
    assert HOSTILE not in html and SCRIPT not in html
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in html
    assert "&lt;script&gt;" in html


def test_a_live_refresh_gets_the_table_part_with_the_map_data(signed_in, fleet):
    client = signed_in("viewer")
    response = client.get("/map?service=checkout", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith("<details") and "<header" not in html
    assert 'data-live-src="/map?service=checkout"' in html
    assert 'data-map-query="service=checkout"' in html
    data = json.loads(html.split('id="map-data">', 1)[1].split("</script>", 1)[0])
    api = client.get("/api/v1/map?service=checkout").get_json()
    assert {n["id"] for n in data["nodes"]} == {n["id"] for n in api["nodes"]}
