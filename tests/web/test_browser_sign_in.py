"""A person signs in with a real browser and sees the Sources page (screenshot kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import StaticServiceConfig
from app.factory import create_app
from tests.conftest import PASSWORD, LiveServer

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def served(make_qd, make_user):
    qd = make_qd(
        static_services=(
            StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",), tags=("web",)),
        )
    )
    for source in configured_sources(qd.config, qd.clock):
        run_pass(qd, source.collector)
    make_user("nina", "admin")
    server = LiveServer(create_app(qd=qd)).start()
    yield server
    qd.feed.close()
    server.stop()


def test_sign_in_in_a_browser_and_see_the_sources_page(served, page):
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{served.url}/sources")
    assert "/login" in page.url
    page.fill("input[name=username]", "nina")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/sources")
    row = page.locator('tr[data-source="static"]')
    assert row.count() == 1
    assert "ok" in row.inner_text()
    assert page.locator("nav").inner_text().count("Sources") == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sources.png"), full_page=True)
    page.click("text=Services")
    page.wait_for_url(f"{served.url}/services")
    assert page.locator('tr[data-service="orders"]').count() == 1
    page.screenshot(path=str(ARTIFACTS / "services.png"), full_page=True)
    # The Content-Security-Policy must not block any of our own scripts or styles.
    assert problems == []
