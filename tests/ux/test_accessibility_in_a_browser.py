"""Every page, signed in and signed out, in light and dark, and the main ones on a phone:
axe-core finds no serious or critical violation (screenshots in test-artifacts/ux/)."""

from __future__ import annotations

import pytest

from tests.ux.axe import describe, serious_violations
from tests.ux.conftest import ARTIFACTS, sign_in

SCHEMES = ("light", "dark")


def signed_in_pages(site) -> dict[str, str]:
    return {
        "overview": "/",
        "services": "/services",
        "service": "/services/orders",
        "map": "/map",
        "map-focus": "/map?service=orders",
        "traces": "/traces?service=orders",
        "trace": f"/traces/{site.trace_id}",
        "push": "/push",
        "idempotency": "/idempotency",
        "sources": "/sources",
        "actions": "/actions",
        "runbooks": "/runbooks",
        "rules": "/rules",
        "reports": "/reports",
        "admin": "/admin/users",
        "not-found": "/no-such-page",
    }


def settle(page) -> None:
    """Wait for what scripts draw after load (the map's first draw); the live stream never idles."""
    page.wait_for_load_state("load")
    if page.locator("figure[data-map]").count():
        page.wait_for_selector("figure[data-map-ready], figure[data-map-error]", state="attached")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_signed_in_page_has_a_serious_violation(ux_site, browser, scheme):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page = sign_in(browser, ux_site, scheme=scheme)
    found = {}
    try:
        for name, path in signed_in_pages(ux_site).items():
            page.goto(f"{ux_site.url}{path}")
            settle(page)
            page.screenshot(path=str(ARTIFACTS / f"axe-{scheme}-{name}.png"), full_page=True)
            violations = serious_violations(page, ux_site.url)
            if violations:
                found[name] = describe(violations)
    finally:
        context.close()
    assert not found, "\n".join(f"{name}:\n{text}" for name, text in found.items())


# On a phone the bar and the tables take other shapes (the brand's name hidden, cards).
PHONE_PAGES = ("overview", "services", "service", "push", "idempotency", "actions", "reports")


def test_on_a_phone_the_main_pages_have_no_serious_violation(ux_site, browser):
    context, page = sign_in(browser, ux_site, width=390, height=844)
    found = {}
    try:
        for name, path in signed_in_pages(ux_site).items():
            if name not in PHONE_PAGES:
                continue
            page.goto(f"{ux_site.url}{path}")
            settle(page)
            violations = serious_violations(page, ux_site.url)
            if violations:
                found[name] = describe(violations)
    finally:
        context.close()
    assert not found, "\n".join(f"{name}:\n{text}" for name, text in found.items())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_sign_in_page_has_no_serious_violation(ux_site, browser, scheme):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    try:
        page.goto(f"{ux_site.url}/login")
        violations = serious_violations(page, ux_site.url)
        assert not violations, describe(violations)
        page.fill("input[name=username]", "nina")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
        violations = serious_violations(page, ux_site.url)
        assert not violations, describe(violations)
    finally:
        context.close()


def test_the_check_fails_a_page_with_a_deliberate_violation(ux_site, browser):
    """The same check on a page given an unlabelled field and grey-on-grey text fails."""
    context, page = sign_in(browser, ux_site)
    try:
        page.goto(f"{ux_site.url}/services")
        assert serious_violations(page, ux_site.url) == []
        page.evaluate(
            """() => {
              const main = document.querySelector("main");
              const input = document.createElement("input");
              input.type = "text";
              main.prepend(input);
              const faint = document.createElement("p");
              faint.textContent = "hard to read";
              faint.style.color = "#bbb";
              faint.style.background = "#ccc";
              main.prepend(faint);
            }"""
        )
        ids = {v["id"] for v in serious_violations(page, ux_site.url)}
        assert {"label", "color-contrast"} <= ids
    finally:
        context.close()


def test_the_operate_group_opens_and_closes_from_the_keyboard(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        summary = page.locator("summary.nav-group__summary")
        menu = page.locator(".nav-group__menu")
        summary.focus()
        page.keyboard.press("Enter")
        assert menu.is_visible()
        assert not serious_violations(page, ux_site.url)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Actions"
        page.keyboard.press("Escape")
        assert not menu.is_visible()
        assert page.evaluate("document.activeElement.tagName") == "SUMMARY"  # back where it was
        summary.click()
        page.locator("h1").click()  # a click elsewhere closes it, as a menu would
        assert not menu.is_visible()
        summary.click()
        page.locator(".nav-group__menu a", has_text="Rules").click()
        page.wait_for_url(f"{ux_site.url}/rules")
        assert page.locator('.nav-group__menu a[aria-current="page"]').text_content() == "Rules"
    finally:
        context.close()
