"""The Reports pages in Chromium: nothing scrolls sideways on a phone or a wall screen, the
report shows in its frame, and the framed report runs no script even if one got in.

The store side of these pages runs on both stores in test_pages_and_api.py."""

from __future__ import annotations

import pytest

from app.config import ReportConfig
from app.models import ReportRow
from app.reports.running import make_report
from tests.conftest import PASSWORD
from tests.reports.conftest import END, seed_known_period

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


@pytest.fixture
def site(qd, make_user, live_server):
    """The live app with one stored report over the seeded day; returns it and the report id."""
    seed_known_period(qd.store)
    qd.clock = lambda: END
    qd.config = qd.config.replace(reports=(ReportConfig(name="handoff", daily_at="07:30"),))
    report_id = make_report(qd, qd.config.reports[0], "schedule")
    make_user("olga", "operator")
    return live_server, report_id


def signed_in_page(browser, site, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return context, page


@pytest.mark.parametrize("width", [390, 1366, 2560])
def test_the_reports_pages_and_the_report_fit_the_screen(browser, site, width):
    server, report_id = site
    context, page = signed_in_page(browser, server, width)
    try:
        for path in ("/reports", f"/reports/{report_id}", f"/reports/{report_id}/report.html"):
            page.goto(server.url + path)
            overflow = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
            assert overflow <= 0, f"{path} at {width} px scrolls sideways by {overflow} px"
        page.goto(f"{server.url}/reports/{report_id}")
        frame = page.frame_locator("iframe.report-frame")
        assert frame.locator("h2", has_text="Availability per service").is_visible()
        assert frame.locator("#incidents tr[data-incident]").count() == 6
    finally:
        context.close()


def test_a_script_that_got_into_a_stored_report_does_not_run(browser, site, qd):
    server, report_id = site
    with qd.store.session(write=True) as db:
        row = db.get(ReportRow, report_id)
        injected = "<script>document.title = 'ran'</script>"
        injected += "<img src=x onerror=\"document.title='ran'\">"
        row.html = row.html.replace("</body>", injected + "</body>")
    context, page = signed_in_page(browser, server, 1366)
    try:
        page.goto(f"{server.url}/reports/{report_id}/report.html")
        page.wait_for_timeout(300)
        assert page.title() != "ran"
        page.goto(f"{server.url}/reports/{report_id}")
        page.wait_for_timeout(300)
        frame = page.frame(url=f"{server.url}/reports/{report_id}/report.html")
        assert frame is not None and frame.title() != "ran"
    finally:
        context.close()
