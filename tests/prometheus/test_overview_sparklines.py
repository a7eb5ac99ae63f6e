"""The Overview's Traffic card against a real Prometheus: its rows come from a real pass, and its
sparklines read every listed service in one range query per figure, kept for a while, however
many services are listed and whatever their names are; in a browser they land in their rows
and come back, from the cache, after a live refresh."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import PrometheusConfig
from app.factory import create_app
from app.models import utcnow
from collectors.prometheus import PrometheusReader, services_red_sparklines
from tests.conftest import PASSWORD, LiveServer, sign_in
from tests.fixtures.processes import wait_for
from tests.web.test_service_pages import element, html_of

HOSTILE = '<svg onload=alert(1)>"&|(x)$1'
LISTED = ("orders", "a.b", HOSTILE)
# The hour is read in 60 s steps, the last one at the page's clock. That clock runs 50 s ahead,
# so the last two steps (now + 50 s, now - 10 s) both fall within a 2 min rate window of this
# test's few seconds of traffic: no minute of waiting for a second step.
AHEAD = timedelta(seconds=50)


def drawn(lines: dict, services) -> bool:
    return all(
        len([v for _, v in lines[figure].get(name, []) if v is not None]) >= 2
        for figure in ("rate_rps", "error_ratio")
        for name in services
    )


def test_the_sparklines_read_all_listed_services_in_one_range_query_per_figure_and_keep_it(
    prometheus_factory, fleet_metrics, recording_proxy_factory, make_qd, make_user
):
    fleet_metrics.serve("orders", per_tick=2, errors_in_ten=3)
    fleet_metrics.serve("a.b", per_tick=1)
    fleet_metrics.serve(HOSTILE, per_tick=1)
    fleet_metrics.serve("aXb", per_tick=1)  # what "a.b" would match as an unescaped regex
    fleet_metrics.serve("payments", per_tick=1)  # not listed
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    proxy = recording_proxy_factory(prometheus.url)
    config = PrometheusConfig(url=proxy.url, window="2m")
    qd = make_qd(prometheus=config)
    qd.clock = lambda: utcnow() + AHEAD
    direct = PrometheusReader(prometheus.url, 5)
    wait_for(
        lambda: drawn(services_red_sparklines(direct, config, LISTED, qd.clock()), LISTED),
        "two steps of every listed service's rate and error ratio",
        timeout=60,
    )
    lines = services_red_sparklines(direct, config, [*LISTED, "nobody"], qd.clock())
    direct.close()
    assert set(lines["rate_rps"]) == set(LISTED)  # neither aXb nor payments; nobody has none
    assert 0.2 < [v for _, v in lines["error_ratio"]["orders"] if v is not None][-1] < 0.4

    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "vera").status_code == 302
    collector = {s.name: s.collector for s in configured_sources(qd.config, qd.clock)}
    assert run_pass(qd, collector["prometheus"]).ok
    proxy.reset()

    card = element(html_of(client, "/"), "section", 'id="traffic"')
    assert re.findall(r'<tr data-traffic-service="([^"]*)"', card)[0] == "orders"  # erroring
    assert proxy.requests["/api/v1/query_range"] == 0  # the page itself asks Prometheus nothing

    url = "/charts/traffic?" + urlencode([("service", name) for name in LISTED])
    chart = html_of(client, url, **{"HX-Request": "true"})

    assert proxy.requests["/api/v1/query_range"] == 2  # rate and error ratio, for all three
    assert chart.count("<polyline") == 6
    for name in ("orders", "a.b"):
        cell = element(chart, "div", f'data-sparklines-of="{name}"')
        assert cell.count("<polyline") == 2 and 'hx-swap-oob="true"' in cell
    assert "aXb" not in chart and "payments" not in chart
    assert "<svg onload" not in chart
    assert 'data-sparklines-of="&lt;svg onload=alert(1)&gt;&#34;&amp;|(x)$1"' in chart
    assert re.search(r"error ratio</span> [23]\d\.\d%", element(chart, "div", 'of="orders"'))
    assert "Last hour from Prometheus" in chart

    # The live stream re-renders the Overview on every pass: the same list is not read again.
    html_of(client, url, **{"HX-Request": "true"})
    assert proxy.requests["/api/v1/query_range"] == 2
    # Another list is another pair of queries, whatever its length.
    html_of(client, "/charts/traffic?service=orders")
    assert proxy.requests["/api/v1/query_range"] == 4


def test_the_sparklines_say_so_when_prometheus_does_not_answer(make_qd, make_user):
    qd = make_qd(prometheus=PrometheusConfig(url="http://127.0.0.1:1"))
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "vera").status_code == 302
    chart = html_of(client, "/charts/traffic?service=orders")
    problem = element(chart, "span", "data-sparklines-problem")
    assert "Prometheus did not answer for the charts: cannot reach Prometheus" in problem
    assert "<polyline" not in chart and "no chart" in element(chart, "div", 'of="orders"')


def test_in_a_browser_the_sparklines_land_in_their_rows_and_return_after_a_live_refresh(
    prometheus_factory, fleet_metrics, recording_proxy_factory, make_qd, make_user, browser
):
    fleet_metrics.serve("orders", per_tick=2, errors_in_ten=3)
    fleet_metrics.serve(HOSTILE, per_tick=1)
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    proxy = recording_proxy_factory(prometheus.url)
    config = PrometheusConfig(url=proxy.url, window="2m")
    qd = make_qd(prometheus=config)
    qd.clock = lambda: utcnow() + AHEAD
    shown = ["orders", HOSTILE]
    direct = PrometheusReader(prometheus.url, 5)
    wait_for(
        lambda: drawn(services_red_sparklines(direct, config, shown, qd.clock()), shown),
        "two steps of both services' figures",
        timeout=60,
    )
    direct.close()
    collector = {s.name: s.collector for s in configured_sources(qd.config, qd.clock)}
    assert run_pass(qd, collector["prometheus"]).ok
    proxy.reset()
    make_user("ursula", "viewer")
    server = LiveServer(create_app(qd=qd)).start()
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/login")
        page.fill("input[name=username]", "ursula")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/")
        rows = page.locator("#traffic tr[data-traffic-service]")
        cells = page.locator("#traffic tr[data-traffic-service] [data-sparklines-of]")
        cells.nth(1).wait_for(state="attached")
        assert [rows.nth(i).get_attribute("data-traffic-service") for i in range(2)] == shown
        # Each row's cell holds its own service's lines, and the footer says where from.
        for i in range(2):
            assert cells.nth(i).get_attribute("data-sparklines-of") == rows.nth(i).get_attribute(
                "data-traffic-service"
            )
            assert cells.nth(i).locator("polyline").count() == 2
        assert "Last hour from Prometheus" in page.locator("#traffic-sparklines").inner_text()
        assert page.locator("#traffic svg[onload]").count() == 0  # the name stayed text
        asked = proxy.requests["/api/v1/query_range"]
        assert asked == 2

        # A live refresh re-renders the Overview: the cells come back, read from the cache.
        page.evaluate("document.querySelector('#traffic').dataset.old = '1'")
        page.evaluate("window.Quarterdeck.refreshTopics(['metrics'])")
        page.wait_for_selector("#traffic:not([data-old]) [data-sparklines-of] polyline")
        assert page.locator("#traffic [data-sparklines-of] polyline").count() == 4
        assert proxy.requests["/api/v1/query_range"] == asked
    finally:
        context.close()
        qd.feed.close()
        server.stop()
