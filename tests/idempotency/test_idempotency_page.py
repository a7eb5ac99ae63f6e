"""The Idempotency page: chart, top keys, storms, mismatches, at-risk keys, trace links."""

from __future__ import annotations

import time

import pytest

from app.factory import create_app
from tests.conftest import sign_in
from tests.idempotency.conftest import STREAM, drain, emit

TRACE = "0af7651916cd43dd8448eb211c80319c"
HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def page_client(idem_qd, make_user):
    app = create_app(qd=idem_qd)
    client = app.test_client()
    assert sign_in(client, make_user("viewer-1", "viewer")).status_code == 302
    return client


@pytest.fixture
def filled(idem_qd, make_collector, redis_client):
    now_ms = int(time.time() * 1000)
    emit(redis_client, 1, service="orders", kind="payload_mismatch", ts_ms=str(now_ms - 60_000),
         trace_id=TRACE, key="order-77")  # fmt: skip
    # A retry storm: one key 15 times within one minute (storm_per_min defaults to 10).
    minute_ms = str(now_ms - now_ms % 60_000)
    storm = {"service": "orders", "instance": "o-1", "key": "order-9", "kind": "duplicate_inflight"}
    for _ in range(15):
        redis_client.xadd(STREAM, {**storm, "ts_ms": minute_ms})
    emit(
        redis_client, 2, service=HOSTILE, kind="lock_expired", key=HOSTILE, ts_ms=str(now_ms - 1000)
    )
    redis_client.set("idem:late", f"{now_ms - 20_000}:tok", px=4_000)
    drain(idem_qd, make_collector())
    return idem_qd


def test_the_page_shows_every_part_and_links_conflicts_to_their_traces(filled, page_client):
    response = page_client.get("/idempotency")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="chart-by-kind"' in html and "<svg" in html and "<rect" in html
    assert f'href="/traces/{TRACE}"' in html
    assert "data-mismatch" in html and "order-77" in html
    assert "data-storm" in html and "order-9" in html
    assert "data-at-risk" in html and "idem:late" in html
    assert 'data-count="payload_mismatch"' in html
    assert "Idempotency" in html  # the nav link


def test_fleet_text_is_escaped_in_tables_and_chart_labels(filled, page_client):
    html = page_client.get("/idempotency").get_data(as_text=True)
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=" in html
    assert "<title>&lt;img" in html  # the by-service chart's tooltip


def test_filters_in_the_url_narrow_the_page(filled, page_client):
    html = page_client.get("/idempotency?kind=lock_expired").get_data(as_text=True)
    assert "data-conflict" in html and "order-77" not in html
    html = page_client.get("/idempotency?service=orders&window=15m").get_data(as_text=True)
    assert "&lt;img" not in html.split('id="idem-conflicts"')[1].split("</section>")[0]
    assert page_client.get("/idempotency?window=3y").status_code == 400
    assert page_client.get("/idempotency?since=2026-12-02T00:00:00Z").status_code == 200


def test_the_page_asks_htmx_for_its_part_only(filled, page_client):
    html = page_client.get("/idempotency", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert html.lstrip().startswith('<div id="idem-body"')


def test_the_page_needs_a_signed_in_user(filled):
    response = create_app(qd=filled).test_client().get("/idempotency")
    assert response.status_code in (302, 401)
