"""The Map page in Chromium: the graph draws what the API returns, the controls drive the URL
and the graph, and names from the fleet stay text in the graph, the tooltip, the panel and the
table.

Screenshots of the whole fleet and a focused map at 1366, 390 and 2560 px are written under the
test's tmp dir (map-<width>-fleet.png, map-<width>-focus.png), or to $MAP_SCREENSHOTS if set.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from app.store.catalog import apply_catalog_update
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord
from tests.conftest import PASSWORD
from tests.map.realistic_map import HOSTILE, SCRIPT, plan_fleet, seed_map_fleet
from tests.web.test_browser_layouts import SIDEWAYS_OVERFLOW_JS

DESCRIBE_JS = "() => window.QuarterdeckMap.describe()"
API_JS = """async (query) => {
  const response = await fetch('/api/v1/map' + query, {credentials: 'same-origin'});
  return response.json();
}"""
READY = "figure[data-map-ready]"
NODE_AT_JS = """(id) => {
  const node = window.QuarterdeckMap.cy().getElementById(id);
  return {health: node.data("health"), label: node.data("label"), ...node.position()};
}"""
ALL_NODES_IN_VIEW_JS = """() => {
  const cy = window.QuarterdeckMap.cy();
  const w = cy.width(), h = cy.height();
  return cy.nodes().every((n) => {
    const b = n.renderedBoundingBox();
    return b.x1 >= -1 && b.y1 >= -1 && b.x2 <= w + 1 && b.y2 <= h + 1;
  });
}"""


@pytest.fixture
def site(qd, make_user, live_server):
    """The realistic map fleet behind the real server, and a viewer to sign in as."""
    seed_map_fleet(qd, plan_fleet(), calls_per_edge=30)
    make_user("mara", "viewer")
    return live_server


def open_map(browser, site, path="/map", width=1366, height=900, scheme="light"):
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", "mara")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    page.goto(site.url + path)
    page.wait_for_selector(READY)
    return context, page, errors


def wait_for_query(page, query: str) -> dict:
    """Wait until the graph drawn is the API's answer to `query`; return what it shows."""
    page.wait_for_function(
        "(q) => { const f = document.querySelector('figure[data-map]');"
        " return f.hasAttribute('data-map-ready') && f.dataset.mapQuery === q; }",
        arg=query,
    )
    return page.evaluate(DESCRIBE_JS)


def url_args(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def click_node(page, node_id: str) -> None:
    """Click a node where Cytoscape drew it."""
    box = page.locator(".map__canvas").bounding_box()
    at = page.evaluate(
        "(id) => window.QuarterdeckMap.cy().getElementById(id).renderedPosition()", node_id
    )
    page.mouse.click(box["x"] + at["x"], box["y"] + at["y"])


def hover_node(page, node_id: str) -> None:
    box = page.locator(".map__canvas").bounding_box()
    at = page.evaluate(
        "(id) => window.QuarterdeckMap.cy().getElementById(id).renderedPosition()", node_id
    )
    page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])


def test_the_graph_draws_the_nodes_and_edges_the_api_returns(browser, site):
    context, page, errors = open_map(browser, site)
    try:
        shown = page.evaluate(DESCRIBE_JS)
        api = page.evaluate(API_JS, "")
        assert {n["id"]: n["health"] for n in shown["nodes"]} == {
            n["id"]: n["health"] for n in api["nodes"]
        }
        assert sorted((e["source"], e["target"]) for e in shown["edges"]) == sorted(
            (e["source"], e["target"]) for e in api["edges"]
        )
        # Health is told by a glyph in the label too, not by colour alone.
        by_id = {n["id"]: n for n in shown["nodes"]}
        assert by_id["payments"]["label"].startswith("✕ ")
        assert by_id["search-indexer-worker"]["label"].startswith("▲ ")
        assert by_id["loyalty"]["label"].startswith("‖ ")
        # Drift: declared only is dashed, undeclared dotted and marked.
        drift = {e["drift"]: e for e in shown["edges"] if e["drift"]}
        assert drift["declared_only"]["line_style"] == "dashed"
        assert "declared" in drift["declared_only"]["label"]
        assert drift["observed_only"]["line_style"] == "dotted"
        assert drift["observed_only"]["label"].startswith("⚠")
        # The edge label carries rate, error % and p95.
        failing = next(
            e
            for e in shown["edges"]
            if (e["source"], e["target"]) == ("shipping", "carrier-adapter-ups")
        )
        assert "rps" in failing["label"] and "%" in failing["label"] and "ms" in failing["label"]
        # Without JavaScript's help the table is there, folded away under the graph.
        assert page.locator("#map-table").get_attribute("open") is None
        assert not page.locator(".map__nojs").is_visible()
        assert errors == []
    finally:
        context.close()


def test_clicking_a_service_focuses_the_map_and_every_control_lives_in_the_url(browser, site):
    context, page, errors = open_map(browser, site)
    try:
        click_node(page, "checkout")
        page.wait_for_url("**/map?service=checkout")
        focused = wait_for_query(page, "service=checkout")
        api = page.evaluate(API_JS, "?service=checkout")
        assert {n["id"] for n in focused["nodes"]} == {n["id"] for n in api["nodes"]}
        assert [n["id"] for n in focused["nodes"] if n["focus"]] == ["checkout"]
        # The panel offers the service page and its traces.
        panel = page.locator("#map-panel")
        assert panel.locator(".map-panel__title").text_content() == "checkout"
        assert (
            panel.locator("a", has_text="Service page").get_attribute("href")
            == "/services/checkout"
        )
        assert (
            panel.locator("a", has_text="Traces").get_attribute("href")
            == "/traces?service=checkout"
        )

        page.select_option("select[name=hops]", "2")
        wider = wait_for_query(page, "service=checkout&hops=2")
        assert url_args(page) == {"service": "checkout", "hops": "2"}
        assert len(wider["nodes"]) > len(focused["nodes"])

        page.check("input[name=unhealthy]")
        unhealthy = wait_for_query(page, "service=checkout&hops=2&unhealthy=true")
        assert url_args(page) == {"service": "checkout", "hops": "2", "unhealthy": "true"}
        api = page.evaluate(API_JS, "?service=checkout&hops=2&unhealthy=true")
        assert {n["id"] for n in unhealthy["nodes"]} == {n["id"] for n in api["nodes"]}

        # Back goes to the previous filters, and the form follows.
        page.go_back()
        again = wait_for_query(page, "service=checkout&hops=2")
        assert {n["id"] for n in again["nodes"]} == {n["id"] for n in wider["nodes"]}
        assert not page.is_checked("input[name=unhealthy]")

        page.click("[data-map-clear-focus]")
        whole = wait_for_query(page, "")
        assert url_args(page) == {}
        assert len(whole["nodes"]) == len(page.evaluate(API_JS, "")["nodes"])

        # A deep link opens the same state.
        page.goto(f"{site.url}/map?unhealthy=true")
        deep = wait_for_query(page, "unhealthy=true")
        assert page.is_checked("input[name=unhealthy]")
        assert "web-gateway" not in {n["id"] for n in deep["nodes"]}
        assert errors == []
    finally:
        context.close()


def test_the_search_box_finds_and_focuses_a_service(browser, site):
    context, page, errors = open_map(browser, site)
    try:
        page.fill("input[name=service]", "carrier")
        page.wait_for_function(
            "() => document.querySelector('figure[data-map]').dataset.mapMatches === '2'"
        )
        page.fill("input[name=service]", "warehouse")
        page.press("input[name=service]", "Enter")
        focused = wait_for_query(page, "service=warehouse-sync")
        assert url_args(page) == {"service": "warehouse-sync"}
        assert [n["id"] for n in focused["nodes"] if n["focus"]] == ["warehouse-sync"]
        assert errors == []
    finally:
        context.close()


def test_hostile_names_stay_text_in_the_graph_tooltip_panel_and_table(browser, site):
    context, page, errors = open_map(browser, site)
    try:
        shown = page.evaluate(DESCRIBE_JS)
        labels = {n["id"]: n["label"] for n in shown["nodes"]}
        assert labels[HOSTILE].endswith(HOSTILE) and labels[SCRIPT].endswith(SCRIPT)
        hover_node(page, HOSTILE)
        tooltip = page.locator(".map__tooltip")
        tooltip.wait_for(state="visible")
        assert tooltip.locator(".map__tooltip-title").text_content() == HOSTILE
        click_node(page, HOSTILE)
        wait_for_query(
            page, page.evaluate("(s) => new URLSearchParams({service: s}).toString()", HOSTILE)
        )
        panel = page.locator("#map-panel")
        assert panel.locator(".map-panel__title").text_content() == HOSTILE
        # The table (opened) follows the focus and shows the names as text too.
        page.click("#map-table summary")
        page.wait_for_function(
            "() => { const t = document.getElementById('map-table');"
            " return t.open && t.dataset.mapQuery.startsWith('service='); }"
        )
        assert page.locator("#map-nodes").inner_text().count("<img src=x") >= 1
        assert page.locator("#map-edges").inner_text().count("<script>") >= 1
        # Nothing the names hold became an element or ran.
        assert (
            page.locator(".map img, #map-panel img, #map-table img, .map__tooltip img").count() == 0
        )
        assert page.locator("main script:not([src]):not([type])").count() == 0
        assert page.evaluate("() => window.__pwned") is None
        assert errors == []
    finally:
        context.close()


SIZES = (("1366", 1366, 900, "light"), ("390", 390, 844, "light"), ("2560", 2560, 1440, "dark"))


def test_the_map_fits_laptop_phone_and_wall(browser, site, tmp_path):
    out = Path(os.environ.get("MAP_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for label, width, height, scheme in SIZES:
        wall = "wall=1" if label == "2560" else ""
        for view, query in (("fleet", ""), ("focus", "service=checkout&hops=2")):
            path = "/map?" + "&".join(q for q in (query, wall) if q)
            context, page, errors = open_map(browser, site, path, width, height, scheme)
            try:
                shown = wait_for_query(page, query)
                assert shown["nodes"], path
                assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == [], path
                canvas = page.locator(".map__canvas").bounding_box()
                assert canvas["width"] >= 0.6 * width and canvas["x"] + canvas["width"] <= width
                assert canvas["y"] + canvas["height"] <= height + 1 or label == "390", path
                # Every node is inside the canvas (the layout fits what it draws), except on a
                # phone, which starts zoomed in enough to read and says Fit shows it all.
                inside = page.evaluate(ALL_NODES_IN_VIEW_JS)
                zoom = page.evaluate("() => window.QuarterdeckMap.cy().zoom()")
                if label == "390":
                    assert zoom >= 0.69 or inside, path
                    if not inside:
                        assert "Fit shows it all" in page.text_content(".map__status")
                else:
                    assert inside, path
                page.screenshot(path=str(out / f"map-{label}-{view}.png"))
                assert errors == []
            finally:
                context.close()


def test_past_the_node_limit_groups_are_count_nodes_with_a_note(browser, site):
    context, page, errors = open_map(browser, site, "/map?limit=12")
    try:
        shown = page.evaluate(DESCRIBE_JS)
        api = page.evaluate(API_JS, "?limit=12")
        groups = [n for n in shown["nodes"] if n["kind"] == "group"]
        assert api["truncated"] and len(groups) == len(api["groups"]) >= 1
        members = {g["id"]: g["members"] for g in api["groups"]}
        for group in groups:
            assert f"{members[group['id']]} services" in group["label"]
        note = page.locator("#map-notes .map-note--grouped")
        assert note.is_visible() and "Too many services to draw one by one" in note.text_content()
        # A group's panel lists its first members; each focuses the map on that service.
        biggest = max(groups, key=lambda g: members[g["id"]])
        click_node(page, biggest["id"])
        first = page.locator("#map-panel .map-panel__members a").first
        name = first.text_content()
        first.click()
        wait_for_query(page, f"service={name}&limit=12")
        assert url_args(page) == {"service": name, "limit": "12"}
        assert errors == []
    finally:
        context.close()


def test_compare_marks_what_appeared_and_counts_it(browser, site):
    # Nothing was traced an hour ago: every observed call and service is new.
    context, page, errors = open_map(browser, site, "/map?compare=1h")
    try:
        shown = page.evaluate(DESCRIBE_JS)
        api = page.evaluate(API_JS, "?compare=1h")
        appeared = {
            (e["source"], e["target"]) for e in api["edges"] if e["diff"]["status"] == "appeared"
        }
        assert appeared and appeared == {
            (e["source"], e["target"]) for e in shown["edges"] if e["diff"] == "appeared"
        }
        assert all(
            e["label"].startswith("+ new") for e in shown["edges"] if e["diff"] == "appeared"
        )
        note = page.locator("#map-notes .map-note--diff").text_content()
        assert f"{api['diff']['edges']['appeared']} appeared" in note
        assert page.locator("select[name=compare]").input_value() == "1h"
        assert errors == []
    finally:
        context.close()


def test_a_health_change_recolours_the_open_map_in_place(browser, site, qd):
    context, page, errors = open_map(browser, site)
    try:
        page.wait_for_selector("#live-indicator[data-state=connected]")
        before = page.evaluate(NODE_AT_JS, "web-gateway")
        assert before["health"] == "passing"
        check = CheckRecord("check-web-gateway", "http", "critical", output="GET /health: 503")
        instance = InstanceRecord(
            id="web-gateway-1", node="node-1", address="10.0.1.1", checks=(check,)
        )
        changed = ServiceRecord(name="web-gateway", instances=(instance,))
        with qd.store.session(write=True) as db:
            apply_catalog_update(
                db, "consul", CatalogUpdate(qd.clock(), (changed,), complete=False)
            )
        qd.feed.publish({"services"})
        page.wait_for_function("() => window.QuarterdeckMap.refreshes() >= 1")
        after = page.evaluate(NODE_AT_JS, "web-gateway")
        assert after["health"] == "critical" and after["label"].startswith("✕ ")
        # Drawn in place: the same position, no new layout.
        assert (after["x"], after["y"]) == (before["x"], before["y"])
        # The folded table followed too, and stays folded.
        assert page.locator("#map-table").get_attribute("open") is None
        row = page.locator('#map-nodes tr[data-node="web-gateway"]')
        assert "critical" in row.text_content()
        # Unfolded by the reader, it stays unfolded across the next refresh.
        page.click("#map-table summary")
        qd.feed.publish({"services"})
        page.wait_for_function("() => window.QuarterdeckMap.refreshes() >= 2")
        assert page.locator("#map-table").get_attribute("open") == ""
        assert errors == []
    finally:
        context.close()


def test_clicking_a_call_shows_its_figures_evidence_and_drift(browser, site):
    caller, callee = plan_fleet().declared_only[0]
    context, page, errors = open_map(browser, site, "/map")
    try:
        query = page.evaluate("(s) => new URLSearchParams({service: s}).toString()", caller)
        page.goto(f"{site.url}/map?{query}")
        wait_for_query(page, query)
        api = page.evaluate(API_JS, "?" + query)
        declared = next(e for e in api["edges"] if (e["source"], e["target"]) == (caller, callee))
        assert declared["drift"] == "declared_only"
        box = page.locator(".map__canvas").bounding_box()
        at = page.evaluate(
            "([s, t]) => window.QuarterdeckMap.cy().edges()"
            ".filter(e => e.data('source') === s && e.data('target') === t)[0].renderedMidpoint()",
            [declared["source"], declared["target"]],
        )
        page.mouse.click(box["x"] + at["x"], box["y"] + at["y"])
        panel = page.locator("#map-panel")
        title = f"{declared['source']} → {declared['target']}"
        page.wait_for_function(
            "(t) => document.querySelector('#map-panel .map-panel__title').textContent === t",
            arg=title,
        )
        facts = panel.locator(".map-panel__facts").inner_text()
        assert "declared as a Consul Connect upstream" in facts
        assert "declared in Consul but no traffic seen in the window" in facts
        assert "no figure" in facts  # never 0 for what nobody measured
        assert url_args(page) == {"service": caller}  # a call does not move the focus
        assert errors == []
    finally:
        context.close()
