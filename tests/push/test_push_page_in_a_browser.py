"""The Push page in Chromium: the chart at phone, laptop and wall width, names as text, live append.

Screenshots are written under the test's tmp dir (push-390.png, push-1280.png, push-2560.png).
These run on SQLite only: what the browser does is the same on either store, and the store's
side of this page (the seeded hour in the chart's data, the live part) runs on both stores in
test_push_page.py.
"""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, LiveServer
from tests.fixtures.processes import LOOPBACK, wait_for
from tests.fixtures.websocket import open_websockets
from tests.push.conftest import seed_history
from tests.push.test_push_page import IMG, SCRIPT, register
from tests.web.test_browser_layouts import SIDEWAYS_OVERFLOW_JS

pytestmark = pytest.mark.sqlite_only

SIZES = (("phone", 390, 844, "light"), ("laptop", 1280, 800, "light"), ("wall", 2560, 1440, "dark"))

DESCRIBE_JS = (
    "() => window.QuarterdeckCharts && window.QuarterdeckCharts.describe('push-connections')"
)


def signed_in_page(browser, site_url, qd, width, height, scheme):
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{site_url}/login")
    page.fill("input[name=username]", "push-viewer")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site_url}/")
    return context, page


def test_the_chart_fits_phone_laptop_and_wall_with_hostile_labels_as_text(
    push_edge, browser, tmp_path
):
    edge = push_edge(2)
    register(edge.qd, SCRIPT, IMG, LOOPBACK, edge.servers[0].port)
    seed_history(edge)
    edge.api()  # creates the viewer
    site = LiveServer(edge._client.application).start()
    try:
        with open_websockets(edge.haproxy.frontend_ws_url, 4):
            assert edge.collect().ok
            for label, width, height, scheme in SIZES:
                context, page = signed_in_page(browser, site.url, edge.qd, width, height, scheme)
                try:
                    wall = "?wall=1" if label == "wall" else ""
                    page.goto(f"{site.url}/push{wall}")
                    page.wait_for_selector("figure[data-chart-ready]")
                    chart = page.evaluate(DESCRIBE_JS)
                    assert chart["points"] >= 50, chart
                    labels = [s["label"] for s in chart["series"]]
                    assert labels[0] == "All services" and SCRIPT in labels
                    assert chart["series"][0]["last"] == 4
                    # The chart fills its card, within the window, at every width.
                    box = page.locator("figure[data-chart] .uplot").bounding_box()
                    assert box["width"] <= width and box["width"] >= 0.6 * min(width, 1400)
                    assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == []
                    # The legend shows the hostile name as its text; nothing it holds runs.
                    legend = page.locator(".u-legend .u-label", has_text="pwned").first
                    assert legend.text_content() == SCRIPT
                    page.screenshot(path=str(tmp_path / f"push-{width}.png"), full_page=True)
                    over = page.locator("figure[data-chart] .u-over").bounding_box()
                    page.mouse.move(over["x"] + over["width"] * 0.8, over["y"] + over["height"] / 2)
                    tooltip = page.locator(".chart__tooltip")
                    tooltip.wait_for(state="visible")
                    tip_labels = tooltip.locator(".chart__tooltip-label").all_text_contents()
                    assert SCRIPT in tip_labels
                    assert (
                        page.locator(
                            "figure[data-chart] img, figure[data-chart] script:not([type])"
                        ).count()
                        == 0
                    )
                    assert page.evaluate("() => window.__pwned") is None
                    page.screenshot(path=str(tmp_path / f"push-{width}.png"), full_page=True)
                finally:
                    context.close()
    finally:
        site.stop()
        edge.qd.feed.close()


def test_new_connections_are_appended_to_the_open_chart(push_edge, browser):
    edge = push_edge(2)
    edge.api()
    site = LiveServer(edge._client.application).start()
    try:
        with open_websockets(edge.haproxy.frontend_ws_url, 2):
            assert edge.collect().ok
            context, page = signed_in_page(browser, site.url, edge.qd, 1280, 800, "light")
            try:
                page.goto(f"{site.url}/push")
                page.wait_for_selector("figure[data-chart-ready]")
                before = page.evaluate(DESCRIBE_JS)
                assert before["series"][0]["last"] == 2
                page.wait_for_selector("#live-indicator[data-state=connected]")
                page.evaluate("() => { document.querySelector('figure[data-chart]').kept = 1; }")
                # Collect again once the second the page was drawn in has passed, so the new
                # count is appended (within that second it would replace the newest point).
                wait_for(
                    lambda: edge.qd.clock().timestamp() >= before["last_time"] + 1,
                    "the second after the page's last point",
                )
                with open_websockets(edge.haproxy.frontend_ws_url, 3):
                    assert edge.collect().ok  # publishes "push": the page refreshes its part
                    page.wait_for_function(
                        "() => window.QuarterdeckCharts.describe('push-connections')"
                        ".series[0].last === 5",
                        timeout=15000,
                    )
                    after = page.evaluate(DESCRIBE_JS)
                    # A new second appends a point; a refresh within the newest point's second
                    # replaces it (times are whole seconds): the chart shows 5 either way.
                    assert after["points"] == before["points"] + (
                        after["last_time"] > before["last_time"]
                    )
                    # The same chart took the points: appended, not drawn again from scratch.
                    assert (
                        page.evaluate("() => document.querySelector('figure[data-chart]').kept")
                        == 1
                    )
                    assert page.locator("[data-total]").text_content().strip() == "5"
            finally:
                context.close()
    finally:
        site.stop()
        edge.qd.feed.close()
