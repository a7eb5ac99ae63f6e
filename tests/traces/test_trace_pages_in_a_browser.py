"""The Traces pages in Chromium: span text stays inert, subtrees fold without JavaScript, and
search and waterfall read at 1366, 390 and 2560 px (screenshots in test-artifacts/traces/)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.factory import create_app
from tests.conftest import PASSWORD, LiveServer
from tests.traces.trace_builder import MS, T0, span, store_spans, trace_id

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "traces"
SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
WIDTHS = ((1366, 900), (390, 844), (2560, 1440))
SERVICES = ("gateway", "orders", "payments", "inventory", "shipping-estimator-eu-west-1")


def realistic_trace(n: int, at_ns: int, rng: random.Random, error: bool) -> list:
    """A gateway request fanning out over several services, three or four levels deep."""
    spans = [span(n, 1, service="gateway", name="POST /api/checkout", duration_ms=0, at_ns=at_ns,
                  attributes={"http.method": "POST", "http.route": "/api/checkout",
                              "resource.service.version": "2.14.1"})]  # fmt: skip
    next_id, cursor = 2, 1.0
    for service in SERVICES[1:]:
        took = rng.uniform(5, 60)
        parent_id = next_id
        spans.append(span(n, parent_id, parent=1, service=service, name=f"{service}.handle",
                          start_ms=cursor, duration_ms=took, at_ns=at_ns,
                          error=error and service == "payments",
                          attributes={"peer.service": service, "note": SCRIPT}))  # fmt: skip
        next_id += 1
        for k in range(2):
            spans.append(span(n, next_id, parent=parent_id, service=service,
                              name=f"SELECT {service}_rows", start_ms=cursor + 1 + k * took / 3,
                              duration_ms=took / 4, at_ns=at_ns,
                              attributes={"db.system": "postgresql"}))  # fmt: skip
            next_id += 1
        cursor += took * 0.7
    root = spans[0]
    spans[0] = type(root)(**{**root.__dict__, "duration_ns": int((cursor + 5) * MS)})
    return spans


@pytest.fixture
def site(qd, make_user):
    rng = random.Random(8)
    spans = []
    for n in range(1, 41):
        spans += realistic_trace(n, T0 + n * 7 * 10**9, rng, error=n % 6 == 0)
    store_spans(qd.store.engine, spans)
    make_user("nina", "viewer")
    server = LiveServer(create_app(qd=qd)).start()
    yield server
    qd.feed.close()
    server.stop()


def open_signed_in(browser, site, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", "nina")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return context, page


def test_span_text_with_script_renders_inert_in_the_waterfall(site, browser):
    context, page = open_signed_in(browser, site, 1366, 900)
    try:
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{site.url}/traces/{trace_id(6)}?span={2:016x}")
        info = page.locator(
            f"#span-{2:016x} ~ details.wf-info, #span-{2:016x} > details.wf-info"
        ).first
        assert SCRIPT in info.inner_text()
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img[src=x]").count() == 0
        assert dialogs == []
    finally:
        context.close()


def test_a_subtree_folds_and_unfolds_by_its_row(site, browser):
    context, page = open_signed_in(browser, site, 1366, 900)
    try:
        page.goto(f"{site.url}/traces/{trace_id(3)}")
        child = page.locator(f"[data-span='{3:016x}']")  # orders' first SELECT, under orders
        assert child.is_visible()
        page.locator(f"summary[data-span='{2:016x}']").click()
        assert not child.is_visible()
        page.locator(f"summary[data-span='{2:016x}']").click()
        assert child.is_visible()
    finally:
        context.close()


@pytest.mark.parametrize(("width", "height"), WIDTHS)
def test_search_and_waterfall_fit_the_screen(site, browser, width, height):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page = open_signed_in(browser, site, width, height)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        for name, path in (
            ("search", "/traces?service=payments"),
            ("waterfall", f"/traces/{trace_id(6)}?span={4:016x}"),
            ("compare", f"/traces/compare?a={trace_id(5)}&b={trace_id(6)}"),
        ):
            page.goto(f"{site.url}{path}")
            sideways = page.evaluate("document.documentElement.scrollWidth - innerWidth")
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}-first-screen.png"))
            if name == "search":
                page.evaluate("document.querySelector('.trace-table').scrollIntoView()")
                page.screenshot(path=str(ARTIFACTS / f"{name}-{width}-results.png"))
            assert sideways <= 0, f"{name} at {width} px scrolls sideways by {sideways} px"
        assert problems == []
    finally:
        context.close()
