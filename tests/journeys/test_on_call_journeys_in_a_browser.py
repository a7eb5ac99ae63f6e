"""The on-call journeys, end to end in Chromium against the whole demo (`quarterdeck demo`).

One demo for the module: the real fleet with its HAProxy, nginx, Prometheus and Redis (where
installed), its traces, and the scripted night (demo/night.py). Each journey is what an
engineer does at 3 a.m.; each step's screenshot is kept under test-artifacts/journeys/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.fleet.tools import answers, find_tool

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "journeys"
# The fleet, its tools and the store come up first; a busy machine is slow at it.
START_TIMEOUT_S = 150
# The night's bad canary goes out 160 s in; its first whole minute of spans comes up to two
# minutes later; the rule holds 30 s and is evaluated every 15 s.
PROPOSAL_TIMEOUT_S = 420


@dataclass
class Demo:
    url: str
    password: str
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo():
    """The whole demo, as the README's first command starts it, on a free port.

    Started from the checkout's root (as `scripts/demo.sh` does), so it runs this tree's code.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        password = None
        deadline = time.monotonic() + START_TIMEOUT_S
        while password is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            match = re.search(r"one-time password: (\S+)", line)
            password = match.group(1) if match else None
        assert password, "the demo printed no password"
        url = f"http://127.0.0.1:{port}"
        while not answers(f"{url}/healthz"):  # printed just before it starts serving
            assert time.monotonic() < deadline and process.poll() is None, "the demo never served"
            time.sleep(0.2)
        yield Demo(url, password, process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture
def on_call(browser, demo):
    """A signed-in admin's page at laptop size, collecting script errors; closed after."""
    opened = []

    def open_page(width: int = 1366, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(f"{demo.url}/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", demo.password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{demo.url}/")
        opened.append(context)
        return page

    yield open_page
    for context in opened:
        context.close()


def shot(page, journey: str, step: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # caret="initial": a hidden caret leaves style="" on inputs, which the page's CSP refuses
    # once a live swap copies it.
    page.screenshot(path=str(ARTIFACTS / f"{journey}-{step}.png"), full_page=True, caret="initial")


def api(page, path: str):
    """GET an API path with the page's session (the browser's own cookies)."""
    base = re.match(r"https?://[^/]+", page.url).group(0)
    response = page.request.get(base + path)
    assert response.ok, (path, response.status)
    return response.json()


def until(page, check, what: str, timeout_s: float):
    """Reload the page until `check()` holds (the live stream refreshes most parts anyway)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:.0f} s")
        page.wait_for_timeout(2000)
        page.reload()


def test_triage_from_the_overview_to_the_worst_services_traces_and_its_place_on_the_map(
    demo, on_call
):
    page = on_call()
    # The night's failing payments instance reaches the Overview's first card.
    until(page, lambda: page.locator('#now [data-now="critical"]').count(), "critical line", 120)
    shot(page, "triage", "1-overview")
    worst = page.locator("#needs-attention tbody tr").first
    service = worst.get_attribute("data-service")
    worst.locator("a").first.click()
    page.wait_for_url(f"{demo.url}/services/{service}")
    assert page.locator("h1").inner_text().strip().startswith(service)
    shot(page, "triage", "2-service")

    page.click('[data-traces="slow"]')
    page.wait_for_url(re.compile(r"/traces\?"))
    until(page, lambda: page.locator("#trace-results tbody tr").count(), "trace of it", 60)
    shot(page, "triage", "3-traces")
    page.locator("#trace-results tbody tr a").first.click()
    page.wait_for_url(re.compile(r"/traces/[0-9a-f]{32}$"))
    assert page.locator(".trace-title__service").count() == 1
    shot(page, "triage", "4-trace")

    page.goto(f"{demo.url}/map?service={service}")

    def drawn_with_a_neighbour():
        page.wait_for_selector("figure[data-map-nodes]")
        return int(page.get_attribute("figure[data-map-nodes]", "data-map-nodes")) >= 2

    # Its edges come from the first traces and scrapes: the first seconds may have none yet.
    until(page, drawn_with_a_neighbour, "a neighbour on the map", 90)
    assert service in page.get_attribute("figure[data-map-nodes]", "data-map-query")
    shot(page, "triage", "5-map")
    assert page.errors == []


def test_a_payload_mismatch_leads_to_the_trace_of_the_request_that_sent_it(demo, on_call):
    if not find_tool("redis-server"):
        pytest.fail("redis-server is not installed: scripts/setup.sh installs it")
    page = on_call()
    page.goto(f"{demo.url}/")
    # The night's retry storm reuses its keys with other payloads.
    until(page, lambda: page.locator('#now [data-now="mismatch"]').count(), "mismatch", 150)
    page.locator('#now [data-now="mismatch"] a').first.click()
    page.wait_for_url(re.compile(r"/idempotency\?.*kind=payload_mismatch"))
    row = page.locator("tr[data-conflict]", has=page.locator("a[data-trace]")).first
    until(page, lambda: row.count(), "mismatch with a trace", 60)
    shot(page, "mismatch", "1-idempotency")
    trace_id = row.locator("a[data-trace]").get_attribute("data-trace")
    row.locator("a[data-trace]").click()
    page.wait_for_url(f"{demo.url}/traces/{trace_id}")
    # The trace of the refused request: its spans come in the instance's next batch (5 s),
    # later on a busy machine.
    until(page, lambda: page.locator("code.trace-id").count(), "trace", 90)
    assert page.locator(".trace-title__service").inner_text() == "orders"
    shot(page, "mismatch", "2-trace")
    assert page.errors == []


def test_drain_a_push_instance_watch_it_on_the_push_page_then_undo(demo, on_call):
    page = on_call()
    page.goto(f"{demo.url}/services/push")
    page.click('[data-instance-actions="push-1"] [data-action="drain"]')
    page.wait_for_selector('#action-flow[data-flow="plan"]')
    shot(page, "drain", "1-plan")
    page.click("#action-flow [data-continue]")
    page.wait_for_selector('#action-flow[data-flow="confirm"]')
    page.fill("#action-reason", "journey: host patch")
    if page.locator("#action-confirm-name").count():
        page.fill("#action-confirm-name", "push")
    page.click("#action-flow [data-confirm-action]")
    page.wait_for_selector('#action-flow[data-flow="result"] [data-action-status="done"]')
    shot(page, "drain", "2-result")
    entry_id = page.get_attribute("#action-flow", "data-entry")

    # The Push page shows the drain: push-1 takes no new connections, its count falls.
    page.goto(f"{demo.url}/push")
    drain = page.locator("#push-drains tr[data-drain]", has_text="push-1")
    until(page, lambda: drain.count(), "drain progress of push-1", 60)
    shot(page, "drain", "3-push-page")

    page.goto(f"{demo.url}/actions")
    page.click(f'[data-entry="{entry_id}"] summary')
    page.click(f'[data-entry="{entry_id}"] [data-undo]')
    page.wait_for_selector('#action-flow[data-flow="undo"]')
    page.click("#action-flow [data-confirm-undo]")
    page.wait_for_selector('#action-flow[data-flow="result"] [data-action-status="done"]')
    shot(page, "drain", "4-undone")

    def back_in_rotation():
        members = api(page, "/api/v1/services/push")
        push1 = next(i for i in members["instances"] if i["id"] == "push-1")
        rows = push1.get("lb", [])
        return rows and all(row.get("state") not in ("drain", "maint", "down") for row in rows)

    # The balancers say so at their next collection.
    until(page, back_in_rotation, "push-1 back in every balancer", 60)
    assert page.errors == []


def run_service_action(page, form: str, reason: str, service: str) -> None:
    """Submit a form of the Act on this service card: plan, confirm (name typed), result."""
    page.locator(f'#service-actions form[data-service-action="{form}"] button[type=submit]').click()
    page.wait_for_selector('#action-flow[data-flow="plan"]')
    page.click("#action-flow [data-continue]")
    page.wait_for_selector('#action-flow[data-flow="confirm"]')
    page.fill("#action-reason", reason)
    if page.locator("#action-confirm-name").count():
        page.fill("#action-confirm-name", service)
    page.click("#action-flow [data-confirm-action]")
    page.wait_for_selector('#action-flow[data-flow="result"] [data-action-status="done"]')


def test_degrade_orders_see_the_fleet_skip_reservations_then_restore(demo, on_call):
    page = on_call()
    page.goto(f"{demo.url}/services/orders")
    degrade = page.locator('#service-actions form[data-service-action="degrade"]')
    degrade.locator('[name="level"]').fill("partial")
    degrade.locator('[name="features_off"]').fill("reservations")
    degrade.locator('[name="duration_s"]').fill("900")
    run_service_action(page, "degrade", "journey: inventory is slow", "orders")
    page.wait_for_selector("#service-actions [data-degraded]")
    shot(page, "degrade", "1-degraded")

    # The orders instances watch their switch in Consul: new orders skip the reservation, and
    # their spans say so.
    search = "/traces?service=orders&tag=quarterdeck.degrade.level:partial&lookback=15m"
    page.goto(demo.url + search)
    until(page, lambda: page.locator("#trace-results tbody tr").count(), "degraded trace", 90)
    shot(page, "degrade", "2-degraded-traces")
    page.locator("#trace-results tbody tr a").first.click()
    page.wait_for_url(re.compile(r"/traces/[0-9a-f]{32}$"))
    assert "degraded: call skipped" in page.content()  # the span event, in its details
    shot(page, "degrade", "3-trace")

    page.goto(f"{demo.url}/services/orders")
    run_service_action(page, "restore", "journey: inventory recovered", "orders")
    page.wait_for_selector("#service-actions [data-not-degraded]")
    shot(page, "degrade", "4-restored")
    assert page.errors == []


def test_approve_the_proposed_rollback_and_see_the_release_go_back(demo, on_call):
    page = on_call()
    page.goto(f"{demo.url}/")
    proposal = page.locator("#proposals tr[data-proposal]", has_text="roll-back")
    until(page, lambda: proposal.count(), "rollback proposal", PROPOSAL_TIMEOUT_S)
    assert "orders" in proposal.first.inner_text()
    shot(page, "rollback", "1-proposed")
    proposal.first.locator("button", has_text="Approve").click()
    page.wait_for_load_state()
    shot(page, "rollback", "2-approved")

    def rolled_back():
        releases = api(page, "/api/v1/releases?service=orders")["releases"]
        active = [r for r in releases if r.get("kv_role") == "active"]
        return active and active[0]["version"] == "2.4.1"

    until(page, rolled_back, "release back on 2.4.1", 90)
    page.goto(f"{demo.url}/services/orders")
    shot(page, "rollback", "3-orders")
    # The approval ran the roll-back runbook as this operator: one audit entry, done.
    audit = api(page, "/api/v1/audit?action=runbook&limit=20")["entries"]
    ran = [e for e in audit if e["target"] == "orders" and e["status"] == "done"]
    assert ran and ran[0]["actor"] == "admin", json.dumps(audit)[:800]
    assert page.errors == []


def test_read_the_handoff_report(demo, on_call):
    page = on_call()
    page.goto(f"{demo.url}/reports")
    shot(page, "report", "0-reports")
    page.locator('tr[data-report-config="handoff"] button', has_text="Run now").click()
    # Made at once: the answer is the stored report's page.
    page.wait_for_url(re.compile(r"/reports/[^/]+$"))
    shot(page, "report", "1-report")
    frame = page.frame_locator("iframe").first
    for section in ("Availability per service", "SLO budget", "Incidents", "Actions taken"):
        assert frame.locator("h2", has_text=section).count() == 1, section
    assert page.errors == []
