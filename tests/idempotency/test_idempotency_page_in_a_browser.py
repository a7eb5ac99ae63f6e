"""The Idempotency page in Chromium: laptop, phone and wall widths, hostile keys, trace links.

Screenshots are written under the test's tmp dir (idempotency-1366.png, -390.png, -2560.png).
"""

from __future__ import annotations

import time

from app.factory import create_app
from tests.conftest import PASSWORD, LiveServer
from tests.idempotency.conftest import STREAM, drain, emit
from tests.web.test_browser_layouts import SIDEWAYS_OVERFLOW_JS

TRACE = "0af7651916cd43dd8448eb211c80319c"
HOSTILE = '<img src=x onerror="window.pwned=1">'
SIZES = ((1366, 800, "light"), (390, 844, "light"), (2560, 1440, "dark"))


def seed(client) -> None:
    """Events over the last hour: kinds, services, a storm, a mismatch with a trace, a risk."""
    now_ms = int(time.time() * 1000)
    kinds = ("duplicate_inflight", "duplicate_completed", "lock_expired", "renew_failed")
    for minute in range(0, 58, 3):
        for i, kind in enumerate(kinds[: 1 + minute % 4]):
            service = ("orders", "billing", "cart")[minute % 3]
            at = str(now_ms - minute * 60_000)
            emit(client, 1 + i, start=minute * 10, service=service, kind=kind, ts_ms=at)
    emit(client, 1, service="orders", kind="payload_mismatch", key="order-77", trace_id=TRACE,
         fingerprint="sha256:9f2c", ts_ms=str(now_ms - 90_000))  # fmt: skip
    storm = {
        "service": "orders",
        "instance": "orders-2",
        "key": "order-9",
        "kind": "duplicate_inflight",
    }
    for _ in range(14):
        client.xadd(STREAM, {**storm, "ts_ms": str(now_ms - now_ms % 60_000)})
    emit(client, 2, service=HOSTILE, kind="release_denied", key=HOSTILE, ts_ms=str(now_ms - 5000))
    client.xadd(STREAM, {"service": "php-legacy", "kind": "dupe"})
    client.set("idem:orders:slow-1", f"{now_ms - 45_000}:tok", px=8_000)
    client.set("idem:orders:fresh", f"{now_ms - 200}:tok", px=30_000)


def test_the_page_fits_every_width_and_links_a_conflict_to_its_trace(
    idem_qd, make_collector, redis_client, make_user, browser, tmp_path
):
    seed(redis_client)
    drain(idem_qd, make_collector())
    name = make_user("idem-viewer", "viewer")
    site = LiveServer(create_app(qd=idem_qd)).start()
    try:
        for width, height, scheme in SIZES:
            context = browser.new_context(
                viewport={"width": width, "height": height}, color_scheme=scheme
            )
            page = context.new_page()
            page.goto(f"{site.url}/login")
            page.fill("input[name=username]", name)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{site.url}/")
            page.goto(f"{site.url}/idempotency")
            assert page.locator("#chart-by-kind rect").count() > 10
            assert page.evaluate("() => window.pwned") is None
            assert page.locator(".ident", has_text=HOSTILE).count() >= 1
            page.screenshot(path=str(tmp_path / f"idempotency-{width}.png"), full_page=True)
            page.screenshot(path=str(tmp_path / f"idempotency-{width}-top.png"))
            # The top bar's nav scrolls sideways by design (overflow-x: auto) on a phone.
            overflow = [f for f in page.evaluate(SIDEWAYS_OVERFLOW_JS) if "topbar__nav" not in f[0]]
            assert overflow == [], width
            if width == 1366:
                page.locator(f'#idem-mismatches a[data-trace="{TRACE}"]').click()
                page.wait_for_url(f"{site.url}/traces/{TRACE}")
            context.close()
    finally:
        site.stop()
    print(f"screenshots in {tmp_path}")
