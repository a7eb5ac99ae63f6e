"""Names, tags, meta and check output from a source are text: never markup, never a script link.

A real browser signs in and reads the Services, Service and Overview pages of a fleet whose
every string is hostile or unusual, then a real collection pass changes one of them and the
page follows over the live stream.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.collection.runner import run_pass
from app.store.catalog import apply_catalog_update
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord
from tests.conftest import PASSWORD

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror=window.__pwned=1>'
JS_URL = "javascript:alert(1)"
UNICODE = "zahlungs‑dienst ✓ 支付"  # with a non-breaking hyphen
SPACED = "pay ments 'q' \"d\" ?x=1#frag"
NAMES = (SCRIPT, IMG, UNICODE, SPACED, "pay")

ALL_LINK_TARGETS = "els => els.map(e => e.getAttribute('href'))"


class FleetSource:
    """A source double: returns the fleet it is given, as one complete catalog update."""

    name = "fleet"
    kind = "consul"

    def __init__(self, services: list[ServiceRecord]) -> None:
        self.services = services

    def collect(self) -> list[CatalogUpdate]:
        return [CatalogUpdate(observed_at=datetime.now(UTC), services=tuple(self.services))]


def hostile_service(name: str, status: str = "passing") -> ServiceRecord:
    checks = (CheckRecord("http", f"check {SCRIPT}", status, output=f"{IMG} {SCRIPT}", notes=IMG),)
    return ServiceRecord(
        name=name,
        tags=(SCRIPT, IMG, UNICODE),
        meta={"owner": SCRIPT, "docs": JS_URL, "runbook": f" {JS_URL}", "note": IMG},
        upstreams=tuple(n for n in NAMES if n != name),
        instances=(
            InstanceRecord(
                id=f"{name} #1",
                node=IMG,
                address="10.0.0.9",
                port=80,
                tags=(SCRIPT,),
                version=IMG,
                checks=checks,
            ),
        ),
    )


@pytest.fixture
def hostile(qd, make_user, live_server):
    """A fleet of hostile names with a day of history, a signed-in viewer, and the server."""
    earlier = datetime.now(UTC) - timedelta(hours=2)
    with qd.store.session() as db:
        update = CatalogUpdate(earlier, tuple(hostile_service(n) for n in NAMES))
        apply_catalog_update(db, "fleet", update)
    source = FleetSource(
        [hostile_service(n, "critical" if n != "pay" else "passing") for n in NAMES]
    )
    assert run_pass(qd, source).ok  # the source is "ok" from here on: no status flip later
    make_user("ursula", "viewer")
    return live_server, source


def sign_in(page, server) -> None:
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", "ursula")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")


def assert_inert(page) -> None:
    """Nothing ran, no injected element exists, and no link can run script."""
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    targets = page.eval_on_selector_all("a[href]", ALL_LINK_TARGETS)
    assert targets and not [t for t in targets if t.strip().lower().startswith("javascript:")]


def test_hostile_names_and_text_render_as_text_on_every_page(hostile, page):
    server, _ = hostile
    sign_in(page, server)
    assert_inert(page)
    attention = page.locator("#needs-attention")
    for name in NAMES[:-1]:
        assert attention.get_by_text(name, exact=True).count() == 1
    assert page.locator("#recent-transitions").get_by_text(SPACED, exact=True).count() == 1

    page.goto(f"{server.url}/services")
    assert_inert(page)
    rows = page.locator("tr[data-service]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.service)")) == sorted(NAMES)
    assert page.locator("#services-table").get_by_text(SCRIPT, exact=True).count() >= len(NAMES)

    for name in NAMES:
        # Follow the list's own link: url_for's quoting must lead back to this very service.
        page.goto(f"{server.url}/services")
        link = page.locator("tr[data-service] td:nth-child(2) a").filter(
            has=page.get_by_text(name, exact=True)
        )
        link.click()
        page.wait_for_load_state()
        title = page.locator("h1.page-header__title")
        assert title.get_attribute("data-service") == name
        assert title.inner_text().startswith(name)
        assert_inert(page)
        about = page.locator("dl.kv").first
        assert about.locator("[data-about=owner]").inner_text() == SCRIPT
        assert about.locator("[data-about=docs]").inner_text() == JS_URL
        assert about.locator("[data-about=docs] a, [data-about=runbook] a").count() == 0
        output = page.locator("pre.output").first
        assert output.text_content() == f"{IMG} {SCRIPT}"
        assert page.get_by_text(f"{name} #1", exact=True).first.is_visible()
        # The upstream links resolve to the right services too.
        for target in page.locator("[data-upstreams] a").evaluate_all(
            "as => as.map(a => [a.textContent, a.href])"
        ):
            assert target[1].startswith(f"{server.url}/services/")
    upstream = page.locator("[data-upstreams] a").filter(has_text=UNICODE)
    upstream.click()
    page.wait_for_load_state()
    assert page.locator("h1.page-header__title").get_attribute("data-service") == UNICODE


def test_a_live_change_refreshes_the_right_service_page_and_stays_inert(hostile, page, qd):
    server, source = hostile
    sign_in(page, server)
    other = page.context.new_page()
    for tab, name in ((page, SPACED), (other, "pay")):
        tab.goto(f"{server.url}/services")
        tab.locator("tr[data-service] td:nth-child(2) a").filter(
            has=tab.get_by_text(name, exact=True)
        ).click()
        tab.wait_for_selector("#live-indicator[data-state=connected]")
        # A mark that an outerHTML swap of the region would remove.
        tab.evaluate("document.getElementById('service-detail').dataset.mark = 'before'")
    topic = page.locator("#service-detail").get_attribute("data-live-topic")
    assert topic.split() == [
        "service:pay%20ments%20%27q%27%20%22d%22%20%3Fx%3D1%23frag",
        "sources",
        "actions",
    ]
    assert page.locator("h1 [data-health=critical]").count() == 1

    source.services = [
        hostile_service(n, "passing" if n == SPACED else "critical" if n != "pay" else "passing")
        for n in NAMES
    ]
    assert run_pass(qd, source).ok
    page.wait_for_selector("h1 [data-health=passing]", timeout=5000)
    assert page.evaluate("document.getElementById('service-detail').dataset.mark") is None
    assert page.locator("h1.page-header__title").get_attribute("data-service") == SPACED
    assert_inert(page)
    # The service named "pay" did not change, and its page was left alone.
    other.wait_for_timeout(600)
    assert other.evaluate("document.getElementById('service-detail').dataset.mark") == "before"
    assert_inert(other)
