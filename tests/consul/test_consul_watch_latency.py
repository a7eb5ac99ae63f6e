"""A check change wakes the blocking query and reaches the API, recorded once.

How fast is a figure for bench/consul_scale.py; here the change must arrive well before the
long poll's wait would have run out, which only a woken blocking query does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import func, select

from app.auth.accounts import create_user
from app.context import Quarterdeck
from app.factory import create_app
from app.models import CollectorRun
from tests.conftest import PASSWORD, LiveServer, csrf_token_from

# Far longer than the deadline below: only a long poll woken by the change can meet it.
WAIT_S = 30
WOKEN_WITHIN_S = 10


@pytest.fixture
def served(make_consul_qd, store_url) -> Iterator[tuple[Quarterdeck, str, requests.Session]]:
    """Quarterdeck on both stores, served over HTTP, and a signed-in viewer's HTTP session."""
    qd = make_consul_qd(store_url, wait_s=WAIT_S)
    with qd.store.session() as db:
        create_user(db, "olga", "viewer", PASSWORD)
    server = LiveServer(create_app(qd=qd), threads=4).start()
    with requests.Session() as http:
        form = http.get(f"{server.url}/login", timeout=5).text
        login = {"username": "olga", "password": PASSWORD, "csrf_token": csrf_token_from(form)}
        assert http.post(f"{server.url}/login", data=login, timeout=5).ok
        yield qd, server.url, http
    qd.feed.close()
    server.stop()


def test_a_failing_check_wakes_the_watch_shows_in_the_api_and_is_recorded_once(
    fleet, double, served, collection, eventually
):
    qd, url, http = served

    def orders_2() -> dict:
        body = http.get(f"{url}/api/v1/services/orders", timeout=5).json()
        return {i["id"]: i for i in body.get("instances", [])}.get("orders-2", {})

    collection(qd)
    assert eventually(orders_2)["health"] == "passing"
    eventually(lambda: any(t.name == "consul-watch-checks" for t in threading.enumerate()))

    double.set_check("service:orders-2", "critical", "HTTP GET /healthz: 503 Service Unavailable")
    eventually(lambda: orders_2()["health"] == "critical", timeout=WOKEN_WITHIN_S)
    check = {c["id"]: c for c in orders_2()["checks"]}["service:orders-2"]
    assert check["status"] == "critical"
    assert check["output"] == "HTTP GET /healthz: 503 Service Unavailable"

    # More passes over orders (a new output, then another service's flap): no new transition.
    double.set_check("service:orders-2", "critical", "HTTP GET /healthz: connection refused")
    eventually(
        lambda: (
            {c["id"]: c for c in orders_2()["checks"]}["service:orders-2"]["output"]
            == "HTTP GET /healthz: connection refused"
        )
    )
    double.set_check("service:payments-2", "warning", "slow")
    eventually(
        lambda: http.get(f"{url}/api/v1/services/payments", timeout=5).json()["health"] == "warning"
    )
    with qd.store.session() as db:
        passes = db.scalar(select(func.count()).select_from(CollectorRun).where(CollectorRun.ok))
    assert passes >= 4

    transitions = http.get(f"{url}/api/v1/services/orders", timeout=5).json()["transitions"]
    assert [(t["instance"], t["from"], t["to"], t["output"]) for t in transitions] == [
        ("orders-2", "passing", "critical", "HTTP GET /healthz: 503 Service Unavailable")
    ]
    assert transitions[0]["check"] == "service:orders-2" and transitions[0]["at"].endswith("Z")
