"""The Push page lists instances a page at a time; its totals, imbalance and drains cover all."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.collection.runner import RECORD_WRITERS
from collectors.balancers import BalancerServer, BalancerUpdate

NOW = datetime(2026, 12, 2, 2, 0, 30, tzinfo=UTC)
INSTANCE_RE = re.compile(r'<tr class="[^"]*" data-instance="([^"]+)"')


def seed(qd, count: int) -> None:
    """`count` members of edge in backends a (the first 130) and b; s7 draining, s150 hot."""
    servers = tuple(
        BalancerServer(
            backend="a" if n < 130 else "b",
            server=f"s{n:03}",
            address=f"10.0.{n // 256}.{n % 256}",
            port=80,
            state="drain" if n == 7 else "up",
            status="DRAIN" if n == 7 else "UP",
            sessions=500 if n == 150 else 4,
        )
        for n in range(count)
    )
    with qd.store.session(write=True) as db:
        RECORD_WRITERS[BalancerUpdate](db, "edge", BalancerUpdate("edge", "haproxy", NOW, servers))


def test_a_fleet_of_250_is_listed_100_instances_a_page_with_every_count_on_each(qd, signed_in):
    seed(qd, 250)
    viewer = signed_in("viewer")

    first = viewer.get("/push").get_data(as_text=True)
    assert INSTANCE_RE.findall(first) == [f"s{n:03}" for n in range(100)]
    assert "Showing instances 1–100 of 250" in first
    assert 'href="/push?offset=100" rel="next">Next 100 →' in first
    assert 'rel="prev"' not in first
    # The totals and the other tables count every instance, not only those shown.
    assert re.search(r"data-total>1,4\d\d<", first), "the total of all 250"
    assert 'data-imbalance="s150"' in first and 'data-drain="s007"' in first
    assert "250 instances" in first

    last = viewer.get("/push?offset=200", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert INSTANCE_RE.findall(last) == [f"s{n:03}" for n in range(200, 250)]
    assert 'data-live-src="/push?offset=200"' in last  # a live refresh stays on this page
    assert 'href="/push?offset=100" rel="prev"' in last and 'rel="next"' not in last

    # A page across two services heads each part with its service's whole figures.
    middle = viewer.get("/push?offset=100").get_data(as_text=True)
    assert INSTANCE_RE.findall(middle) == [f"s{n:03}" for n in range(100, 200)]
    assert "130 instances · 129 taking new connections · 30 on this page" in middle
    assert "120 instances · 120 taking new connections · 70 on this page" in middle
    assert 'href="/push" rel="prev"' in middle

    # Past the end: the last page; not a number: refused, naming the field.
    assert INSTANCE_RE.findall(viewer.get("/push?offset=9999").get_data(as_text=True))[0] == "s200"
    bad = viewer.get("/push?offset=ten")
    assert bad.status_code == 400 and "offset" in bad.get_data(as_text=True)

    # The API is not paged: it lists every instance.
    body = viewer.get("/api/v1/push/connections").get_json()
    assert sum(len(s["instances"]) for s in body["by_service"]) == 250


def test_a_small_fleet_shows_every_instance_and_no_pager(qd, signed_in):
    seed(qd, 30)
    html = signed_in("viewer").get("/push").get_data(as_text=True)
    assert len(INSTANCE_RE.findall(html)) == 30
    assert "data-page" not in html and "on this page" not in html
    assert 'data-live-src="/push"' in html
