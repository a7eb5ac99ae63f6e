"""The Map in Chromium on a 390 px phone and without a mouse: the first draw cuts no node in
half at the canvas edge, and the nodes can be reached, selected and opened from the keyboard.

Screenshots `map-phone-<view>.png` are written to test-artifacts/map/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.map.realistic_map import plan_fleet, seed_map_fleet
from tests.map.test_map_page_in_a_browser import open_map, wait_for_query

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "map"

# Nodes the canvas edge cuts through: partly inside, partly outside the canvas.
CUT_NODES_JS = """() => {
  const cy = window.QuarterdeckMap.cy();
  const w = cy.width(), h = cy.height();
  return cy.nodes().filter((n) => {
    const b = n.renderedBoundingBox({includeLabels: true});
    const touches = b.x2 > 0 && b.x1 < w && b.y2 > 0 && b.y1 < h;
    const inside = b.x1 >= -1 && b.x2 <= w + 1 && b.y1 >= -1 && b.y2 <= h + 1;
    return touches && !inside;
  }).map((n) => n.id());
}"""
VISIBLE_NODES_JS = """() => {
  const cy = window.QuarterdeckMap.cy();
  const w = cy.width(), h = cy.height();
  return cy.nodes().filter((n) => {
    const b = n.renderedBoundingBox({includeLabels: true});
    return b.x1 >= -1 && b.x2 <= w + 1 && b.y1 >= -1 && b.y2 <= h + 1;
  }).map((n) => n.id());
}"""


@pytest.fixture
def site(qd, make_user, live_server):
    """The realistic map fleet behind the real server, and mara (viewer) to sign in as."""
    seed_map_fleet(qd, plan_fleet(), calls_per_edge=30)
    make_user("mara", "viewer")
    return live_server


@pytest.mark.parametrize(("view", "query"), (("fleet", ""), ("focus", "service=checkout&hops=2")))
def test_the_first_draw_on_a_phone_cuts_no_node_at_the_edge(browser, site, view, query):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page, errors = open_map(browser, site, "/map?" + query, 390, 844)
    try:
        wait_for_query(page, query)
        page.screenshot(path=str(ARTIFACTS / f"map-phone-{view}.png"))
        assert page.evaluate(CUT_NODES_JS) == []
        visible = page.evaluate(VISIBLE_NODES_JS)
        if query:
            assert "checkout" in visible  # the focus is on screen, whole
        assert len(visible) >= 2
        assert page.evaluate("() => window.QuarterdeckMap.cy().zoom()") >= 0.49
        assert errors == []
    finally:
        context.close()


SELECTED_JS = "() => window.QuarterdeckMap.cy().nodes(':selected').map((n) => n.id())"
POSITION_JS = "(id) => window.QuarterdeckMap.cy().getElementById(id).position()"


def test_the_nodes_are_reached_selected_and_opened_from_the_keyboard(browser, site):
    context, page, errors = open_map(browser, site, "/map?service=checkout&hops=2")
    try:
        wait_for_query(page, "service=checkout&hops=2")
        # Tab from the Fit button (the last control before the canvas) reaches the canvas.
        page.locator("[data-map-zoom=fit]").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.classList.contains('map__canvas')")
        assert page.locator(".map__canvas").get_attribute("role") == "application"
        # The focused service is selected when the map is drawn: the keyboard starts there.
        # Down (top to bottom) or Right (left to right) goes to the nearest node it calls.
        assert page.evaluate(SELECTED_JS) == ["checkout"]
        start = page.evaluate(POSITION_JS, "checkout")
        direction = page.evaluate(
            "() => document.querySelector('figure[data-map]').dataset.mapDirection"
        )
        page.keyboard.press("ArrowDown" if direction == "TB" else "ArrowRight")
        [chosen] = page.evaluate(SELECTED_JS)
        assert chosen != "checkout"
        moved = page.evaluate(POSITION_JS, chosen)
        assert (moved["y"] > start["y"]) if direction == "TB" else (moved["x"] > start["x"])
        # Its figures are in the panel, which screen readers hear (aria-live).
        assert page.locator("#map-panel .map-panel__title").text_content() == chosen
        # Enter focuses the map on it, as a click does; the keyboard stays on the canvas.
        page.keyboard.press("Enter")
        wait_for_query(page, f"service={chosen}&hops=2")
        assert page.evaluate(SELECTED_JS) == [chosen]
        assert page.evaluate("document.activeElement.classList.contains('map__canvas')")
        # On the focus, Enter moves into the panel: its first link is the service page.
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.textContent") == "Service page"
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/services/{chosen}")
        assert errors == []
    finally:
        context.close()


def test_escape_clears_and_zoom_keys_zoom(browser, site):
    context, page, errors = open_map(browser, site)
    try:
        wait_for_query(page, "")
        page.locator(".map__canvas").focus()
        page.keyboard.press("ArrowRight")
        assert len(page.evaluate(SELECTED_JS)) == 1
        page.keyboard.press("Escape")
        assert page.evaluate(SELECTED_JS) == []
        assert page.locator("#map-panel .map-panel__title").text_content() == "Nothing selected"
        before = page.evaluate("() => window.QuarterdeckMap.cy().zoom()")
        page.keyboard.press("+")
        assert page.evaluate("() => window.QuarterdeckMap.cy().zoom()") > before
        assert errors == []
    finally:
        context.close()
