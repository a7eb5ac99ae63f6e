"""A conflict the guard reports inside a real OpenTelemetry trace links, in Chromium, to that trace.

The trace goes the way a service's does (the SDK's OTLP/HTTP exporter to `POST /v1/traces`); the
conflict goes through Redis and the collector. Nothing is seeded in the store by hand.
"""

from __future__ import annotations

import threading
import time

from opentelemetry.trace import SpanKind

from app.factory import create_app
from fleet.idempotency import IdempotencyGuard
from tests.conftest import PASSWORD, LiveServer
from tests.idempotency.conftest import STREAM, drain
from tests.otlp.test_sdk_export import provider


def test_clicking_a_conflicts_trace_opens_that_trace(
    idem_qd, make_collector, redis_client, make_user, browser
):
    name = make_user("idem-tracer", "viewer")
    site = LiveServer(create_app(qd=idem_qd)).start()
    orders = provider("orders", f"{site.url}/v1/traces")
    guard = IdempotencyGuard(redis_client, "orders", instance="orders-1", ttl_ms=300, stream=STREAM)
    try:
        tracer = orders.get_tracer("orders")
        taken = threading.Event()

        def place_order():
            # Another client takes the key under the work: the watchdog's renewal finds it so.
            redis_client.set(guard.redis_key("order-4711"), "another-holder", px=5000)
            taken.set()
            time.sleep(0.5)
            return {"order": 4711}

        with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as span:
            guard.run("order-4711", place_order, fingerprint="fp-4711")
        trace_id = format(span.get_span_context().trace_id, "032x")
        assert taken.is_set()
        assert orders.force_flush(10_000)
        drain(idem_qd, make_collector())

        context = browser.new_context(viewport={"width": 1366, "height": 800})
        page = context.new_page()
        page.goto(f"{site.url}/login")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{site.url}/")
        page.goto(f"{site.url}/idempotency")
        row = page.locator("tr[data-conflict]", has_text="renew failed")
        assert row.count() == 1
        row.locator(f'a[data-trace="{trace_id}"]').click()
        page.wait_for_url(f"{site.url}/traces/{trace_id}")
        assert page.locator("code.trace-id").inner_text() == trace_id
        assert page.locator(".trace-title__service").inner_text() == "orders"
        assert page.locator(".trace-title__op").inner_text() == "POST /orders"
        context.close()
    finally:
        guard.close()
        orders.shutdown()
        site.stop()
