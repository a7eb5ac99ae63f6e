"""The command palette in Chromium, by keyboard only: "/" and Ctrl-K open it, arrows move,
Enter goes, Esc closes and gives focus back; fleet text stays text (screenshots in
test-artifacts/ux/)."""

from __future__ import annotations

import pytest

from tests.ux.axe import describe, serious_violations
from tests.ux.conftest import ARTIFACTS, HOSTILE, sign_in

OPTIONS = "#palette-list [role=option]"


def open_with_slash(page) -> None:
    page.keyboard.press("/")
    page.wait_for_selector("#palette[open]")
    assert page.evaluate("document.activeElement.id") == "palette-input"


def wait_for_matches(page, text: str) -> None:
    """Wait until the list shows what the API answered for this text."""
    page.wait_for_function(
        """(text) => document.getElementById("palette").dataset.paletteShown === text""",
        arg=text,
    )


def active_option(page) -> dict:
    return page.evaluate(
        """() => {
          const input = document.getElementById("palette-input");
          const el = document.getElementById(input.getAttribute("aria-activedescendant"));
          return {id: el.id, label: el.querySelector(".palette__label").textContent,
                  kind: el.dataset.kind, selected: el.getAttribute("aria-selected")};
        }"""
    )


def test_slash_opens_the_palette_and_enter_goes_to_the_chosen_service(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        page.goto(f"{ux_site.url}/sources")
        page.locator("body").focus()
        open_with_slash(page)
        dialog = page.locator("#palette")
        assert dialog.get_attribute("aria-labelledby") == "palette-title"
        combo = page.locator("#palette-input")
        assert combo.get_attribute("role") == "combobox"
        assert combo.get_attribute("aria-controls") == "palette-list"
        assert page.locator("#palette-list").get_attribute("role") == "listbox"
        page.keyboard.type("payments")
        wait_for_matches(page, "payments")
        assert combo.get_attribute("aria-expanded") == "true"
        first = active_option(page)
        assert first == {"id": "palette-option-0", "label": "payments", "kind": "service",
                         "selected": "true"}  # fmt: skip
        page.keyboard.press("ArrowDown")
        second = active_option(page)
        assert second["label"] == "Open the map focused on payments"
        assert page.locator("#palette-option-0").get_attribute("aria-selected") == "false"
        page.keyboard.press("ArrowUp")
        assert active_option(page)["label"] == "payments"
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{ux_site.url}/map?service=payments")
        page.wait_for_selector("figure[data-map-ready]", state="attached")
        focus = page.evaluate("window.QuarterdeckMap.describe().nodes.filter(n => n.focus)")
        assert [n["id"] for n in focus] == ["payments"]
    finally:
        context.close()


def test_ctrl_k_opens_from_a_field_where_slash_is_only_a_character(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        page.goto(f"{ux_site.url}/services")
        search = page.locator("input[name=q]")
        search.focus()
        page.keyboard.press("/")
        assert search.input_value() == "/" and not page.locator("#palette[open]").count()
        page.keyboard.press("Control+k")
        page.wait_for_selector("#palette[open]")
        page.keyboard.type("checkout")
        wait_for_matches(page, "checkout")
        traces = page.locator(f'{OPTIONS}[data-kind="trace"]')
        assert traces.count() >= 1
        assert "GET /checkout" in traces.first.inner_text()
        # Esc closes the dialog and gives the focus back to the field it was opened from.
        page.keyboard.press("Escape")
        page.wait_for_selector("#palette", state="hidden")
        assert page.evaluate("document.activeElement.name") == "q"
    finally:
        context.close()


def test_enter_right_after_typing_goes_to_the_best_match_of_the_whole_text(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        open_with_slash(page)
        page.keyboard.type("drain orders-2")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{ux_site.url}/services/orders#instance-*")
    finally:
        context.close()


def test_fleet_text_is_shown_as_text_and_runs_nothing(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        open_with_slash(page)
        page.keyboard.type("<img")
        wait_for_matches(page, "<img")
        labels = page.locator(f"{OPTIONS} .palette__label").all_inner_texts()
        assert HOSTILE in labels
        assert page.locator("#palette-list img").count() == 0
        assert page.evaluate("window.__pwned") is None
    finally:
        context.close()


def test_nothing_found_says_so(ux_site, browser):
    context, page = sign_in(browser, ux_site)
    try:
        open_with_slash(page)
        page.keyboard.type("zzzz-no-such-thing")
        wait_for_matches(page, "zzzz-no-such-thing")
        assert page.locator(OPTIONS).count() == 0
        assert "Nothing matches" in page.locator("#palette-status").inner_text()
        assert page.locator("#palette-input").get_attribute("aria-expanded") == "false"
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ("light", "dark"))
def test_the_open_palette_has_no_serious_violation_and_reads_at_every_width(
    ux_site, browser, scheme
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1366, 900), (390, 844), (2560, 1440)):
        context, page = sign_in(browser, ux_site, width, height, scheme)
        try:
            page.goto(f"{ux_site.url}/services")
            page.locator("body").focus()
            open_with_slash(page)
            page.keyboard.type("order")
            wait_for_matches(page, "order")
            page.keyboard.press("ArrowDown")
            page.screenshot(path=str(ARTIFACTS / f"palette-{scheme}-{width}.png"))
            box = page.locator("#palette").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
            violations = serious_violations(page, ux_site.url)
            assert not violations, describe(violations)
        finally:
            context.close()
