"""Plan → confirm → result → undo in Chromium against the real HAProxy, nginx and Consul double.

Screenshots of the plan, the result and the Actions & audit page at 1366, 390 and 2560 px are
written under the test's tmp dir (actions-<page>-<width>.png), or to $ACTIONS_SCREENSHOTS.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.auth.accounts import create_user
from app.factory import create_app
from tests.conftest import PASSWORD, LiveServer
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets
from tests.web.test_browser_layouts import SIDEWAYS_OVERFLOW_JS

pytestmark = pytest.mark.sqlite_only  # the pages' store side runs on both in test_action_pages


@pytest.fixture
def site(fleet):
    with fleet.qd.store.session() as db:
        create_user(db, "olga", "operator", PASSWORD)
    server = LiveServer(create_app(qd=fleet.qd)).start()
    yield server
    fleet.qd.feed.close()
    server.stop()


def signed_in_page(browser, site, width=1366, height=900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return context, page, errors


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ACTIONS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_plan_confirm_result_and_undo_in_the_browser(browser, site, fleet, tmp_path):
    context, page, errors = signed_in_page(browser, site)
    page.goto(f"{site.url}/services/web")

    page.click('[data-instance-actions="web-1"] [data-action="drain"]')
    page.wait_for_selector('#action-flow[data-flow="plan"]')
    assert "/services/web" in page.url  # htmx opened the plan in the page's panel
    assert "set server web/s1 state drain" in page.inner_text("#action-flow")
    page.click("#action-flow [data-continue]")
    page.wait_for_selector('#action-flow[data-flow="confirm"]')
    page.fill("#action-reason", "kernel patch <b>now</b>")
    page.click("#action-flow [data-confirm-action]")
    page.wait_for_selector('#action-flow[data-flow="result"] [data-action-status="done"]')

    assert fleet.haproxy_status("s1") == "DRAIN"
    assert fleet.nginx_line("web-1").endswith("down;")
    assert "kernel patch <b>now</b>" in page.inner_text("#action-flow")  # text, not markup
    entry_id = page.get_attribute("#action-flow", "data-entry")

    page.goto(f"{site.url}/actions")
    page.click(f'[data-entry="{entry_id}"] summary')
    page.click(f'[data-entry="{entry_id}"] [data-undo]')
    page.wait_for_selector('#action-flow[data-flow="undo"]')
    assert "set server web/s1 state ready" in page.inner_text("#action-flow")
    page.click("#action-flow [data-confirm-undo]")
    page.wait_for_selector('#action-flow[data-flow="result"] [data-action-status="done"]')

    assert fleet.haproxy_status("s1") == "UP"
    assert not fleet.maintenance("web-1")
    assert errors == []
    context.close()


def test_screenshots_of_the_plan_result_and_audit_pages(browser, site, fleet, tmp_path):
    context, page, _ = signed_in_page(browser, site)
    page.goto(f"{site.url}/actions/confirm?action=drain&service=web&instance=web-2")
    page.fill("#action-reason", "rotate the host")
    page.click("[data-confirm-action]")
    page.wait_for_selector('[data-flow="result"] [data-action-status="done"]')
    result_path = "/actions/" + page.get_attribute("[data-flow=result]", "data-entry")
    context.close()
    folder = shots_dir(tmp_path)
    for width in (1366, 390, 2560):
        context, page, errors = signed_in_page(browser, site, width=width)
        for name, path in (
            ("plan", "/actions/plan?action=drain&service=web&instance=web-1&wait_for_zero=1"),
            ("result", result_path),
            ("audit", "/actions"),
        ):
            page.goto(site.url + path)
            if name == "audit":
                page.click("[data-entry] summary")
            page.screenshot(path=str(folder / f"actions-{name}-{width}.png"), full_page=True)
            assert page.evaluate(SIDEWAYS_OVERFLOW_JS) == [], (name, width)
        assert errors == []
        context.close()


def test_a_waiting_drain_shows_its_connections_falling_live(browser, push_fleet, tmp_path):
    with push_fleet.qd.store.session() as db:
        create_user(db, "olga", "operator", PASSWORD)
    site = LiveServer(create_app(qd=push_fleet.qd)).start()
    try:
        with open_websockets(push_fleet.haproxy.frontend_ws_url, 2) as clients:
            wait_for(lambda: push_fleet.scur("s1") == 1, "a connection on s1")
            context, page, errors = signed_in_page(browser, site)
            page.goto(f"{site.url}/actions/plan?action=drain&service=push&instance=s1")
            page.check("#wait_for_zero")
            page.click(".action-options button[type=submit]")
            page.wait_for_selector('[data-step-source="connections"]')
            page.click("[data-continue]")
            page.wait_for_selector('[data-flow="confirm"]')
            page.check("#action-force")
            page.fill("#action-confirm-name", "push")
            page.click("[data-confirm-action]")
            page.wait_for_selector('[data-drain-progress][data-connections="1"]')
            page.screenshot(path=str(shots_dir(tmp_path) / "actions-waiting-1366.png"),
                            full_page=True)  # fmt: skip
            assert push_fleet.haproxy.send_runtime("show stat").count("DRAIN") == 1
            for client in clients:
                client.close()
            page.wait_for_selector('[data-flow="result"] [data-action-status="done"]')
        assert "0 connections after" in page.inner_text("[data-flow=result]")
        assert errors == []
        context.close()
    finally:
        push_fleet.qd.feed.close()
        site.stop()
