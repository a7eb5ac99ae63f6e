"""Phones and wall screens, in Chromium: nothing scrolls sideways at 390 px, ids wrap only at
their separators, the demo banner stays one line, and wall mode clips no badge."""

from __future__ import annotations

import shutil
from urllib.parse import quote

import pytest

from app.auth.accounts import create_user
from app.context import Quarterdeck
from app.factory import create_app
from demo.consul import ConsulDouble
from tests.conftest import PASSWORD, LiveServer, test_config
from tests.web.realistic_fleet import (
    LONG_IDS,
    LONG_SERVICE,
    UNKNOWN_SERVICE,
    collect_fleet,
    fleet_sections,
    seed_realistic_fleet,
)

PAGES = {
    "overview": "/",
    "services": "/services",
    "service": f"/services/{quote(LONG_SERVICE)}",
}
BANNER = (
    "Demo: the Consul agent here is simulated (an in-process double of its HTTP API, with "
    "made-up incidents every half minute or so) and the store is a throw-away SQLite file. "
    "Against a real fleet only the config changes."
)

# Every box that scrolls or clips sideways, and by how much its content is wider than it. Text
# cut with an ellipsis on purpose (its whole self in a title) and visually hidden text are fine.
SIDEWAYS_OVERFLOW_JS = """() => {
  const found = [];
  const root = document.documentElement;
  if (root.scrollWidth > innerWidth) found.push(["document", root.scrollWidth - innerWidth]);
  for (const el of document.querySelectorAll("body *")) {
    const style = getComputedStyle(el);
    if (style.overflowX === "visible" || style.textOverflow === "ellipsis") continue;
    if (el.clientWidth <= 1) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      found.push([el.tagName.toLowerCase() + "." + [...el.classList].join("."),
                  el.scrollWidth - el.clientWidth]);
    }
  }
  return found;
}"""

# Each visible badge must be whole: its own text fits, and no box that clips (or scrolls)
# sideways hides any part of it, nor does the edge of the window.
CLIPPED_BADGES_JS = """() => {
  const clipped = [];
  for (const badge of document.querySelectorAll(".badge")) {
    const box = badge.getBoundingClientRect();
    if (box.width === 0 || badge.closest("[hidden], details:not([open]) > :not(summary)")) continue;
    const name = (badge.getAttribute("title") || badge.textContent).trim();
    if (badge.scrollWidth > badge.clientWidth + 1) clipped.push([name, "its own text"]);
    if (box.left < -0.5 || box.right > innerWidth + 0.5) clipped.push([name, "the window"]);
    for (let el = badge.parentElement; el && el !== document.body; el = el.parentElement) {
      if (getComputedStyle(el).overflowX === "visible") continue;
      const outer = el.getBoundingClientRect();
      if (box.left < outer.left - 0.5 || box.right > outer.right + 0.5) {
        clipped.push([name, el.tagName.toLowerCase() + "." + [...el.classList].join(".")]);
      }
    }
  }
  return clipped;
}"""

# Parts of an id between <wbr>s are text nodes: each must sit on one line (no mid-word break).
BROKEN_IDS_JS = """() => {
  const broken = [];
  for (const el of document.querySelectorAll(".ident")) {
    if (el.getBoundingClientRect().width === 0) continue;
    for (const node of el.childNodes) {
      if (node.nodeType !== Node.TEXT_NODE || !node.textContent) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push(node.textContent);
    }
    if (el.getAttribute("title") !== el.textContent) broken.push("title of " + el.textContent);
  }
  return broken;
}"""


@pytest.fixture(scope="module")
def fleet_site(tmp_path_factory, _migrated_sqlite_template):
    """The app over HTTP, showing the realistic fleet (demo mesh, long names, every state).

    One for the module: the tests only read pages, and filling it takes a while."""
    path = tmp_path_factory.mktemp("fleet") / "quarterdeck.db"
    shutil.copy(_migrated_sqlite_template, path)
    consul = ConsulDouble()
    seed_realistic_fleet(consul)
    consul.start()
    try:
        qd = Quarterdeck.from_config(test_config(f"sqlite:///{path}", **fleet_sections(consul)))
        collect_fleet(qd, consul)
    finally:
        consul.stop()
    with qd.store.session(write=True) as db:
        create_user(db, "nina", "admin", PASSWORD)
    app = create_app(qd=qd)
    app.config["DEMO_BANNER"] = BANNER
    server = LiveServer(app).start()
    yield server
    qd.feed.close()
    server.stop()
    qd.store.dispose()


def open_signed_in(browser, site, width: int, height: int, scheme: str = "light"):
    """A page of a fresh browser context at this size, signed in as nina."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", "nina")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return context, page


def test_on_a_phone_no_page_scrolls_sideways_and_ids_break_only_at_separators(
    fleet_site, browser, tmp_path
):
    context, page = open_signed_in(browser, fleet_site, 390, 844)
    try:
        for name, path in PAGES.items():
            page.goto(f"{fleet_site.url}{path}")
            page.screenshot(path=str(tmp_path / f"phone-{name}.png"), full_page=True)
            assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == [], name
            assert page.evaluate(BROKEN_IDS_JS) == [], name
        # The long ids are on the page (wrapped, not cut), each with its whole self as title.
        for instance_id in LONG_IDS:
            assert page.locator(f'.ident[title="{instance_id}"]').count() >= 1
        # Every instance card still shows its badge, address and checks.
        card = page.locator(f'tbody[data-instance="{LONG_IDS[0]}"]')
        assert "critical" in card.inner_text() and "10.42.187.23:8443" in card.inner_text()
        assert card.locator("pre.output").first.is_visible()
    finally:
        context.close()


def test_on_a_phone_the_services_rows_are_cards_with_the_key_columns(fleet_site, browser):
    context, page = open_signed_in(browser, fleet_site, 390, 844)
    try:
        page.goto(f"{fleet_site.url}/services")
        row = page.locator(f'tr[data-service="{LONG_SERVICE}"]')
        text = row.inner_text()
        assert "critical" in text and LONG_SERVICE.replace("-", "") in text.replace("-", "")
        assert "of 3" in text and "2026.11.3-rc.2+build.8812" in text
        # Tags are the service page's business on a phone; the row stays short.
        assert "pci-scope" not in text
        assert row.bounding_box()["width"] <= 390
    finally:
        context.close()


def test_the_demo_banner_is_one_compact_line_that_opens_to_the_whole_text(fleet_site, browser):
    context, page = open_signed_in(browser, fleet_site, 390, 844)
    try:
        banner = page.locator(".demo-banner")
        line = page.evaluate(
            "() => parseFloat(getComputedStyle(document.querySelector('.demo-banner')).lineHeight)"
        )
        assert banner.bounding_box()["height"] < 2 * line
        assert not page.locator(".demo-banner__full").is_visible()
        summary = page.locator(".demo-banner__summary")
        assert summary.get_attribute("title").startswith("the Consul agent here is simulated")
        summary.click()
        assert page.locator(".demo-banner__full").is_visible()
        assert "Against a real fleet only the config changes." in banner.inner_text()
    finally:
        context.close()


# A NOC's 720p screen, a 1080p one and a 4K one.
@pytest.mark.parametrize("width,height", [(1280, 720), (1920, 1080), (3840, 2160)])
def test_wall_mode_clips_no_badge(fleet_site, browser, tmp_path, width, height):
    context, page = open_signed_in(browser, fleet_site, width, height, "dark")
    try:
        wall_pages = {**PAGES, "sources": "/sources", "inventory": "/services/inventory"}
        for name, path in wall_pages.items():
            page.goto(f"{fleet_site.url}{path}?wall=1")
            assert page.evaluate("document.documentElement.classList.contains('wall')")
            page.screenshot(path=str(tmp_path / f"wall-{width}-{name}.jpeg"), quality=70)
            assert page.locator(".badge").count() > 0, name
            assert page.evaluate(CLIPPED_BADGES_JS) == [], name
            assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == [], name
        # The unknown service is on the wall too, under Needs attention.
        page.goto(f"{fleet_site.url}/")
        attention = page.locator("#needs-attention")
        assert attention.locator(f'tr[data-service="{UNKNOWN_SERVICE}"]').count() == 1
    finally:
        context.close()


@pytest.mark.parametrize("width", [800, 1024, 1280, 1366])
def test_on_a_laptop_or_tablet_every_section_of_the_bar_is_in_sight(fleet_site, browser, width):
    context, page = open_signed_in(browser, fleet_site, width, 800)
    try:
        page.goto(f"{fleet_site.url}/")
        overflowing = [e for e in page.evaluate(SIDEWAYS_OVERFLOW_JS) if e[0].startswith("nav")]
        assert overflowing == [], width
        # The last section (Users, for an admin) is inside the window, not scrolled away.
        last = page.locator(".topbar__nav > ul > li").last.bounding_box()
        assert last["x"] + last["width"] <= width
    finally:
        context.close()
