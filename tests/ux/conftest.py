"""A whole site for the accessibility and keyboard tests: the realistic fleet, recent traces
and a signed-in admin, served over HTTP to Chromium."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from app.auth.accounts import create_user
from app.config import StaticServiceConfig
from app.context import Quarterdeck
from app.factory import create_app
from demo.consul import ConsulDouble
from tests.conftest import PASSWORD, LiveServer, test_config
from tests.traces.trace_builder import checkout, store_spans, trace_id
from tests.web.realistic_fleet import collect_fleet, fleet_sections, seed_realistic_fleet

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ux"
TRACES = 12
# A service name that would run script if a page ever put it in as markup.
HOSTILE = '<img src=x onerror="window.__pwned=1">-svc'


@pytest.fixture(scope="module")
def ux_site(tmp_path_factory, _migrated_sqlite_template):
    """The app over HTTP with the realistic fleet, a dozen recent checkout traces and nina (admin).

    One for the module: the tests only read pages, and filling it takes a while."""
    path = tmp_path_factory.mktemp("ux") / "quarterdeck.db"
    shutil.copy(_migrated_sqlite_template, path)
    consul = ConsulDouble()
    seed_realistic_fleet(consul)
    consul.start()
    try:
        sections = fleet_sections(consul)
        hostile = StaticServiceConfig(name=HOSTILE, instances=("10.77.0.1:80",))
        sections["static_services"] = (*sections["static_services"], hostile)
        qd = Quarterdeck.from_config(test_config(f"sqlite:///{path}", **sections))
        collect_fleet(qd, consul)
    finally:
        consul.stop()
    now_ns = time.time_ns()
    spans = []
    for n in range(1, TRACES + 1):
        spans += checkout(n, at_ns=now_ns - (TRACES - n + 1) * 20 * 10**9)
    store_spans(qd.store.engine, spans)
    with qd.store.session(write=True) as db:
        create_user(db, "nina", "admin", PASSWORD)
    server = LiveServer(create_app(qd=qd)).start()
    server.trace_id = trace_id(TRACES)
    yield server
    qd.feed.close()
    server.stop()
    qd.store.dispose()


def sign_in(browser, site, width: int = 1366, height: int = 900, scheme: str = "light"):
    """A page of a fresh browser context at this size and colour scheme, signed in as nina."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", "nina")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return context, page
