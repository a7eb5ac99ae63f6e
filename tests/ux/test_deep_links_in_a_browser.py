"""Every filter state of Services, Traces, Map and Idempotency is in the URL: set it with the
page's own controls, and the URL, a reload of it and the page's links keep it. (Push has no
filters; its paging is covered by tests/push/test_push_page_paging.py.)"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.ux.conftest import sign_in


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def form_values(page, form: str) -> dict[str, list[str]]:
    """What the form would send, as the browser reads its controls."""
    return page.evaluate(
        """(selector) => {
          const values = {};
          for (const [k, v] of new FormData(document.querySelector(selector))) {
            if (v !== "") (values[k] = values[k] || []).push(v);
          }
          return values;
        }""",
        form,
    )


def test_the_services_filters_are_the_url_and_the_live_part_follows_them(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        page.goto(f"{ux_site.url}/services")
        page.fill("input[name=q]", "order")
        page.select_option("select[name=health]", "passing")
        page.check("input[name=proxies]")
        page.check("input[name=gone]")
        page.click("form.filter-bar button[type=submit]")
        page.wait_for_url("**/services?**")
        wanted = {"q": ["order"], "health": ["passing"], "proxies": ["1"], "gone": ["1"]}
        assert query_of(page.url) == wanted
        page.reload()
        assert form_values(page, "form.filter-bar") == wanted
        live = page.locator("[data-live-topic][data-live-src]").first.get_attribute("data-live-src")
        assert query_of(live) == wanted
        names = page.locator("tbody td.stack-title a strong").all_inner_texts()
        assert names and all("order" in n for n in names)
    finally:
        context.close()


def test_a_traces_search_is_pushed_to_the_url_and_reloads_the_same(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        page.goto(f"{ux_site.url}/traces?limit=5")
        page.select_option("select[name=service]", "payments")
        page.select_option("select[name=order]", "slowest")
        page.check("input[name=error]")
        page.click("form.trace-search button[type=submit]")
        page.wait_for_url("**order=slowest**")
        wanted = {"service": ["payments"], "order": ["slowest"], "error": ["true"], "limit": ["5"]}
        assert query_of(page.url) == wanted
        shown = page.locator(".trace-table tbody tr").count()
        assert shown == 5
        page.reload()
        assert form_values(page, "form.trace-search") == wanted
        assert page.locator(".trace-table tbody tr").count() == shown
        # The next page keeps the search and its page size.
        more = page.locator("a[rel=next]").get_attribute("href")
        assert query_of(more) == {**wanted, "offset": ["5"]}
        # Back goes to the search before.
        page.go_back()
        page.wait_for_url(f"{ux_site.url}/traces?limit=5")
        page.wait_for_function("() => document.querySelector('select[name=service]').value === ''")
        assert form_values(page, "form.trace-search") == {"order": ["recent"], "limit": ["5"]}
    finally:
        context.close()


def test_the_map_filters_are_the_url_and_a_reload_draws_the_same(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        page.goto(f"{ux_site.url}/map")
        page.wait_for_selector("figure[data-map-ready]", state="attached")
        page.fill("#map-filters input[name=service]", "orders")
        page.keyboard.press("Enter")
        page.wait_for_url("**service=orders**")
        page.select_option("#map-filters select[name=hops]", "2")
        page.select_option("#map-filters select[name=since]", index=1)
        page.wait_for_url("**hops=2**")
        since = page.locator("#map-filters select[name=since]").input_value()
        wanted = {"service": ["orders"], "hops": ["2"], "since": [since]}
        page.wait_for_function("(s) => location.search.includes('since=' + s)", arg=since)
        assert query_of(page.url) == wanted
        drawn_is_url = """() => document.querySelector('figure[data-map]').dataset.mapQuery
                              === location.search.slice(1)"""
        page.wait_for_function(drawn_is_url)
        drawn = page.evaluate("window.QuarterdeckMap.describe().query")
        assert drawn == "service=orders&hops=2&since=" + since
        page.reload()
        page.wait_for_selector("figure[data-map-ready]", state="attached")
        assert page.evaluate("window.QuarterdeckMap.describe().query") == drawn
        assert form_values(page, "#map-filters") == wanted
    finally:
        context.close()


def test_the_idempotency_filters_are_the_url(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        page.goto(f"{ux_site.url}/idempotency")
        page.select_option("select[name=kind]", "payload_mismatch")
        page.select_option("select[name=window]", "6h")
        page.click("form.idem-filters button[type=submit]")
        page.wait_for_url("**kind=payload_mismatch**")
        wanted = {"kind": ["payload_mismatch"], "window": ["6h"]}
        assert query_of(page.url) == wanted
        page.reload()
        assert form_values(page, "form.idem-filters") == wanted
        # Each kind's tile is a link that keeps the window.
        tile = page.locator('a[data-count="lock_expired"]').get_attribute("href")
        assert query_of(tile) == {"kind": ["lock_expired"], "window": ["6h"]}
    finally:
        context.close()
