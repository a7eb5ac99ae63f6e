"""Degrade a service from its page in Chromium, through the plan → confirm → result panel, and
undo it; the card and the panel fit a phone without sideways scrolling.

Screenshots of the service page's card, the plan and the result panel, and the whole page
after the run, at 1366 and 390 px, are written under the test's tmp dir
(service-actions-<card|plan|result|page>-<width>.png), or to $ACTIONS_SCREENSHOTS.
"""

from __future__ import annotations

import json

import pytest

from app.auth.accounts import create_user
from app.collection.releases import track_releases
from app.factory import create_app
from tests.actions.test_actions_in_a_browser import shots_dir, signed_in_page
from tests.conftest import PASSWORD, LiveServer
from tests.web.test_browser_layouts import SIDEWAYS_OVERFLOW_JS

# The pages' store side runs on both stores in test_service_action_pages.py.
pytestmark = pytest.mark.sqlite_only

KEY = "quarterdeck/degrade/web"


@pytest.fixture
def fleet(make_fleet):
    """web-1 on v1, web-2 on v2, with the releases key naming both: every part of the card."""
    fleet = make_fleet(versions=("v1", "v2"))
    fleet.consul.kv_put("quarterdeck/releases/web", json.dumps({"active": "v2", "previous": "v1"}))
    assert track_releases(fleet.qd).ok
    return fleet


@pytest.fixture
def site(fleet):
    with fleet.qd.store.session() as db:
        create_user(db, "olga", "operator", PASSWORD)
    server = LiveServer(create_app(qd=fleet.qd)).start()
    yield server
    fleet.qd.feed.close()
    server.stop()


def test_degrade_a_service_from_its_page_and_undo_it(browser, site, fleet, tmp_path):
    # caret="initial": hiding the caret leaves style="" on every input, which the live swap of
    # the page's body then copies, and the CSP refuses (a console error of the test's making).
    folder = shots_dir(tmp_path)
    for width in (1366, 390):
        context, page, errors = signed_in_page(browser, site, width=width)
        page.goto(f"{site.url}/services/web")
        card = page.locator("#service-actions")
        card.scroll_into_view_if_needed()
        card.screenshot(path=str(folder / f"service-actions-card-{width}.png"), caret="initial")
        assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == [], ("card", width)

        degrade = card.locator('form[data-service-action="degrade"]')
        degrade.locator('[name="level"]').fill("partial")
        degrade.locator('[name="features_off"]').fill("reviews, <b>recs</b>")
        degrade.locator('[name="duration_s"]').fill("900")
        degrade.locator("button[type=submit]").click()
        page.wait_for_selector('#action-flow[data-flow="plan"]')
        assert "/services/web" in page.url  # htmx opened the plan in the page's panel
        flow = page.locator("#action-flow")
        assert "level partial" in flow.inner_text()
        assert "<b>recs</b>" in flow.inner_text()  # a feature's name is text, not markup
        flow.screenshot(path=str(folder / f"service-actions-plan-{width}.png"), caret="initial")
        assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == [], ("plan", width)

        page.click("#action-flow [data-continue]")
        page.wait_for_selector('#action-flow[data-flow="confirm"]')
        page.fill("#action-reason", "slow database")
        page.fill("#action-confirm-name", "web")
        page.click("#action-flow [data-confirm-action]")
        page.wait_for_selector('#action-flow[data-flow="result"] [data-action-status="done"]')
        switch = fleet.kv(KEY)
        assert (switch["level"], switch["features_off"]) == ("partial", ["<b>recs</b>", "reviews"])
        assert switch["reason"] == "slow database"
        # The card below follows the audit live: the service now says it is degraded.
        page.wait_for_selector("#service-actions [data-degraded]")
        assert card.locator('form[data-service-action="restore"]').count() == 1
        flow.screenshot(path=str(folder / f"service-actions-result-{width}.png"), caret="initial")
        page.screenshot(
            path=str(folder / f"service-actions-page-{width}.png"), full_page=True, caret="initial"
        )
        assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == [], ("result", width)

        page.click("#action-flow [data-undo]")
        page.wait_for_selector('#action-flow[data-flow="undo"]')
        page.click("#action-flow [data-confirm-undo]")
        page.wait_for_selector('#action-flow[data-flow="result"] [data-action-status="done"]')
        assert fleet.kv(KEY) is None
        page.wait_for_selector("#service-actions [data-not-degraded]")
        assert errors == []
        context.close()
