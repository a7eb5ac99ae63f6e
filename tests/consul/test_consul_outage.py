"""Consul down: the last data stays, marked stale; Consul back: fresh data, nothing restarted."""

from __future__ import annotations

import re
import time

from sqlalchemy import func, select

from app.models import CollectorRun


def failed_runs(qd) -> int:
    with qd.store.session() as db:
        query = select(func.count()).select_from(CollectorRun).where(CollectorRun.ok.is_(False))
        return db.scalar(query)


def orders_row(page: str) -> str:
    match = re.search(r'<tr data-service="orders"[^>]*>.*?</tr>', page, re.S)
    assert match, "the Services page has no row for orders"
    return match.group(0)


def test_while_consul_is_down_the_last_data_is_served_stale_and_fresh_once_it_is_back(
    fleet, double, consul_qd, collection, make_api, eventually
):
    api = make_api(consul_qd)
    collection(consul_qd)
    eventually(lambda: api.services().get("orders", {}).get("stale") is False)
    assert api.source()["status"] == "ok"

    double.stop()

    source = eventually(lambda: (found := api.source())["status"] == "error" and found)
    assert source["error_kind"] == "unavailable"
    assert source["last_error"].startswith(f"cannot reach Consul at {double.url}")
    last_success_at = source["last_success_at"]
    assert last_success_at
    # The watch loop keeps trying, and every try is recorded as an error.
    eventually(lambda: failed_runs(consul_qd) >= 2)
    assert api.source()["last_success_at"] == last_success_at
    assert api.source()["status"] == "error"

    orders = api.services()["orders"]
    assert orders["stale"] is True and orders["stale_since"] == last_success_at
    assert orders["health"] == "passing" and orders["instances"]["total"] == 3
    assert api.service("orders")["stale"] is True
    page = api.page("/services")
    assert "Stale data: last successful update" in page
    row = orders_row(page)
    assert "data-stale" in row and "stale since" in row
    assert f'datetime="{last_success_at[:19]}Z"' in row, "stale since the last success"

    # Consul changes while we cannot see it; the same collection loop picks it up on return.
    double.set_check("service:orders-1", "critical", "HTTP GET /healthz: 500")
    restarted_at = time.monotonic()
    double.start()

    eventually(lambda: api.services()["orders"]["stale"] is False, timeout=15)
    recovered_in = time.monotonic() - restarted_at
    assert recovered_in < 15
    orders = api.services()["orders"]
    assert orders["health"] == "critical" and orders["stale_since"] is None
    source = api.source()
    assert source["status"] == "ok" and source["last_success_at"] > last_success_at
    assert "stale since" not in orders_row(api.page("/services"))
