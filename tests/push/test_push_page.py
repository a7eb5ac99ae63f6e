"""The Push page: who may read it, what it says with and without sources, names kept as text."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from app.store.catalog import apply_catalog_update
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord
from tests.fixtures.processes import LOOPBACK
from tests.fixtures.websocket import open_websockets
from tests.push.conftest import seed_history

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror=window.__pwned=1>'
SPEC_RE = re.compile(r"<script type=\"application/json\" data-chart-spec>(.*?)</script>", re.S)
APPEND_RE = re.compile(r"<script type=\"application/json\" data-chart-append=[^>]*>(.*?)</script>")


def register(qd, service: str, instance: str, address: str, port: int) -> None:
    """Put one instance in the catalog, as a Consul pass would."""
    record = InstanceRecord(id=instance, node="n1", address=address, port=port,
                            checks=(CheckRecord("ws", "ws", "passing"),))  # fmt: skip
    with qd.store.session(write=True) as db:
        apply_catalog_update(
            db,
            "consul",
            CatalogUpdate(
                observed_at=datetime.now(UTC),
                services=(ServiceRecord(service, instances=(record,)),),
                complete=False,
            ),
        )


def test_a_viewer_reads_the_page_and_the_api_and_anonymous_callers_cannot(app, signed_in):
    anonymous = app.test_client()
    page = anonymous.get("/push")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    api = anonymous.get("/api/v1/push/connections")
    assert api.status_code == 401
    assert api.get_json()["error"]["code"] == "unauthorized"

    viewer = signed_in("viewer")
    assert viewer.get("/push").status_code == 200
    assert viewer.get("/api/v1/push/connections").status_code == 200
    nav = viewer.get("/").get_data(as_text=True)
    assert 'href="/push"' in nav


def test_without_sources_the_page_says_what_could_count_connections(signed_in):
    viewer = signed_in("viewer")
    html = viewer.get("/push").get_data(as_text=True)
    assert 'id="push-uncounted"' in html
    assert "No source can count push connections" in html
    assert "[[haproxy]]" in html
    body = viewer.get("/api/v1/push/connections").get_json()
    assert body["total"] is None and body["by_service"] == []
    assert "[[haproxy]]" in body["uncounted_reason"]


def test_the_live_part_alone_answers_htmx(signed_in):
    viewer = signed_in("viewer")
    part = viewer.get("/push", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert part.lstrip().startswith('<div id="push-body"')
    assert 'data-live-topic="push sources"' in part
    assert "data-chart-append" in part
    assert "<html" not in part


def test_hostile_service_and_instance_names_stay_text_in_the_page_and_chart_data(push_edge):
    edge = push_edge(2)
    register(edge.qd, SCRIPT, IMG, LOOPBACK, edge.servers[0].port)
    with open_websockets(edge.haproxy.frontend_ws_url, 2):
        assert edge.collect().ok
        body = edge.api()
    names = {s["service"] for s in body["by_service"]}
    assert SCRIPT in names
    instances = {i["instance"] for s in body["by_service"] for i in s["instances"]}
    assert IMG in instances

    html = edge._client.get("/push").get_data(as_text=True)
    assert SCRIPT not in html and IMG not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    # In the chart's JSON, < > & are escaped (\u003c), so no </script> can close the block.
    assert "\\u003cscript\\u003e" in html


def test_the_stored_hour_and_the_count_of_now_reach_the_chart_data(push_edge):
    """The store side of the browser tests (test_push_page_in_a_browser.py, SQLite only)."""
    edge = push_edge(2)
    register(edge.qd, SCRIPT, IMG, LOOPBACK, edge.servers[0].port)
    seed_history(edge)
    with open_websockets(edge.haproxy.frontend_ws_url, 4):
        assert edge.collect().ok
        edge.api()  # signs the viewer in
        html = edge._client.get("/push").get_data(as_text=True)
        part = edge._client.get("/push", headers={"HX-Request": "true"}).get_data(as_text=True)
    spec = json.loads(SPEC_RE.search(html).group(1))
    assert spec["source"] == "rollups"
    assert len(spec["times"]) >= 50 and spec["times"] == sorted(set(spec["times"]))
    labels = [s["label"] for s in spec["series"]]
    assert labels[0] == "All services" and SCRIPT in labels
    assert spec["series"][0]["values"][-1] == 4
    # The live part carries the count of now for the open chart to append.
    append = json.loads(APPEND_RE.search(part).group(1))
    assert append["series"][0]["key"] == "total" and append["series"][0]["values"] == [4]
