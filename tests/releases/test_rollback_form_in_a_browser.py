"""The Releases card's rollback form in a real browser: it plans first (dry run) over
`POST /api/v1/actions` with the CSRF header, and shows the answer as text.

SQLite only: the comparison behind it runs on both stores in test_releases_from_consul.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import StaticServiceConfig
from app.factory import create_app
from app.models import Release, SpanRedMinute
from app.models.span_red import BUCKET_COLUMNS
from tests.conftest import PASSWORD, LiveServer

pytestmark = pytest.mark.sqlite_only
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def served(make_qd, make_user):
    qd = make_qd(
        static_services=(StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),)
    )
    for source in configured_sources(qd.config, qd.clock):
        run_pass(qd, source.collector)
    with qd.store.session(write=True) as db:
        for version, hours, role in (("v1", 2, "previous"), ("v2", 1, "active")):
            db.add(
                Release(
                    service="orders", version=version, started_at=NOW - timedelta(hours=hours),
                    last_seen_at=NOW, seen_in="kv", by="", kv_role=role, instances=0,
                )
            )  # fmt: skip
        # v1's hour 1 % errors, v2's 8 %: worse.
        for m in range(120):
            at = NOW - timedelta(minutes=120 - m)
            db.add(
                SpanRedMinute(
                    minute_at=at, source="orders", target="", count=100,
                    errors=1 if m < 60 else 8, duration_sum_ms=0, duration_max_ms=50,
                    **{**dict.fromkeys(BUCKET_COLUMNS, 0), BUCKET_COLUMNS[7]: 100},
                )
            )  # fmt: skip
    make_user("otto", "operator")
    server = LiveServer(create_app(qd=qd)).start()
    yield server
    qd.feed.close()
    server.stop()


def test_the_rollback_form_plans_over_the_api_and_shows_the_answer(served, page):
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    posted: list[dict] = []
    page.on(
        "request",
        lambda r: (
            posted.append({"body": r.post_data, "csrf": r.headers.get("x-csrftoken")})
            if r.method == "POST" and r.url.endswith("/api/v1/actions")
            else None
        ),
    )
    page.goto(f"{served.url}/login")
    page.fill("input[name=username]", "otto")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{served.url}/services/orders")
    form = page.locator("form[data-rollback]")
    assert "v2 is worse than v1 in error ratio" in page.locator("#releases").inner_text()
    form.locator("button").click()
    result = form.locator("[data-rollback-result]")
    page.wait_for_function(
        "() => { const t = document.querySelector('[data-rollback-result]').textContent;"
        " return t && !t.endsWith('…'); }",
        timeout=10_000,
    )
    (request,) = posted
    assert request["csrf"]
    assert json.loads(request["body"]) == {
        "action": "rollback",
        "target": {"service": "orders"},
        "reason": "v2 is worse than v1 in error ratio",
        "dry_run": True,
    }
    text = result.inner_text()
    # The server's own answer, as text: a plan, or the action framework's refusal naming why.
    assert text.startswith(("planned", "Refused: ")), text
    assert "CSRF" not in text and "HTTP 4" not in text
    assert problems == []
