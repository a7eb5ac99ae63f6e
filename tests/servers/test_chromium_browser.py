"""The browser and page fixtures drive Debian's headless Chromium through Playwright."""

import pytest
from playwright.sync_api import expect

PAGE = """<!doctype html>
<title>Smoke</title>
<p id="status">waiting</p>
<button onclick="document.getElementById('status').textContent = 'clicked'">Click</button>
"""


@pytest.mark.browser
def test_page_runs_javascript_on_click(page, static_site_factory, pytestconfig):
    site = static_site_factory({"index.html": PAGE})

    page.goto(site.url)
    page.get_by_role("button", name="Click").click()

    expect(page.locator("#status")).to_have_text("clicked")
    artifacts = pytestconfig.rootpath / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=artifacts / "smoke-chromium.png")
    assert (artifacts / "smoke-chromium.png").stat().st_size > 0
