"""What the Overview and Sources pages say: unknown services need attention, the tiles read the
same way, and a watched (blocking-query) source says when it last answered, not a stale time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.auth.accounts import create_token, create_user
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.collection.unrecorded import HeldRun, RunRecord
from app.config import ConsulConfig, StaticServiceConfig
from app.factory import create_app
from collectors.base import InstanceRecord
from demo.consul import ConsulDouble
from tests.conftest import PASSWORD, sign_in
from tests.web.test_service_pages import NOW, T0, check, element, html_of, instance, service, write


@pytest.fixture
def signed_in_client():
    """Return a factory: a viewer's client of the app on a given Quarterdeck."""

    def factory(qd):
        with qd.store.session(write=True) as db:
            create_user(db, "vera", "viewer", PASSWORD)
        client = create_app(qd=qd).test_client()
        assert sign_in(client, "vera").status_code == 302
        return client

    return factory


@pytest.fixture
def pages(make_qd, signed_in_client):
    """A Quarterdeck on the pages' fixed clock, and a viewer's client of it (both stores).

    The store is the app's (`app_store_url`: both stores under tests/web), once per store."""
    qd = make_qd()
    qd.clock = lambda: NOW
    return qd, signed_in_client(qd)


def collect(qd) -> None:
    """One pass of every configured source that has a collector."""
    for source in configured_sources(qd.config, qd.clock):
        if source.collector is not None:
            try:
                run_pass(qd, source.collector)
            finally:
                close = getattr(source.collector, "close", None)
                if close is not None:
                    close()


def rows_of(html: str, section_id: str) -> list[str]:
    return re.findall(r'<tr data-service="([^"]+)"', element(html, "section", section_id))


# -- the Overview -------------------------------------------------------------------------------


def test_unknown_services_are_listed_under_needs_attention_with_the_reason(
    make_qd, signed_in_client
):
    qd = make_qd(
        None,
        static_services=(StaticServiceConfig(name="billing-export", instances=("10.0.0.9:9100",)),),
    )
    collect(qd)
    qd.clock = lambda: NOW
    unchecked = InstanceRecord(id="batch-1", node="n1", address="10.0.0.7", port=80, checks=())
    write(
        qd,
        T0,
        service("orders", instance("o-1", check("critical", "HTTP 503"))),
        service("nightly-batch", unchecked),
        service("ledger", instance("l-1", check("passing"))),
    )
    page = html_of(signed_in_client(qd), "/")
    # Worst first: critical, then the two unknown ones; passing ones are not listed.
    assert rows_of(page, "needs-attention") == ["orders", "billing-export", "nightly-batch"]
    attention = element(page, "section", "needs-attention")
    assert "3 services · worst first" in attention
    billing = element(attention, "tr", 'data-service="billing-export"')
    assert 'data-health="unknown"' in billing
    assert "a static list: nothing checks its health" in billing
    batch = element(attention, "tr", 'data-service="nightly-batch"')
    assert "no health check reports on it" in batch and "of 1" in batch


def test_nothing_needs_attention_only_when_every_service_is_passing(pages):
    qd, client = pages
    write(qd, T0, service("ledger", instance("l-1", check("passing"))))
    attention = element(html_of(client, "/"), "section", "needs-attention")
    assert "All services passing" in attention
    assert "critical, warning, in maintenance or unknown" in attention


def test_the_overview_tiles_say_the_same_thing_the_same_way_in_worst_first_order(pages):
    qd, client = pages
    write(
        qd,
        T0,
        service(
            "orders",
            instance("o-1", check("critical")),
            instance("o-2", check("passing")),
        ),
        service("payments", instance("p-1", check("warning"))),
        service("ledger", instance("l-1", check("passing")), instance("l-2", check("passing"))),
    )
    page = html_of(client, "/")
    tiles = re.findall(
        r'<a class="stat[^"]*" href="[^"]*" data-stat="(\w+)">.*?'
        r'<span class="stat__value">(\d+)</span>\s*<span class="stat__sub">([^<]*)</span>',
        page,
        re.S,
    )
    assert [name for name, _, _ in tiles] == [
        "services",
        "critical",
        "warning",
        "maintenance",
        "unknown",
        "passing",
    ]
    # Every tile: a number of services, then its instances in the same words; zeros stay.
    assert [(value, sub) for _, value, sub in tiles] == [
        ("3", "5 instances"),
        ("1", "1 instance"),
        ("1", "1 instance"),
        ("0", "0 instances"),
        ("0", "0 instances"),
        ("1", "3 instances"),
    ]
    assert 'class="stat stat--maintenance stat--zero"' in page
    # Card headers: how many, then of what.
    assert "2 services · worst first" in element(page, "section", "needs-attention")
    recent = element(page, "section", "recent-transitions")
    assert re.search(r"\d+ transitions? · last 24 h · newest first", recent)


# -- the Sources page -----------------------------------------------------------------------------


@pytest.fixture
def consul_fleet():
    consul = ConsulDouble()
    consul.register_node("n1", "10.0.0.1")
    consul.register_service(
        "n1", "orders-1", "orders", address="10.0.0.1", port=80, checks=[{"Name": "http"}]
    )
    consul.start()
    yield consul
    consul.stop()


def consul_and_static(make_qd, url, consul):
    return make_qd(
        url,
        consul=ConsulConfig(url=consul.url, token_env="", wait_s=4),
        static_services=(StaticServiceConfig(name="legacy", instances=("10.0.0.9:80",)),),
    )


def source_row(html: str, name: str) -> str:
    return element(html, "tr", f'data-source="{name}"')


def test_a_watched_source_says_when_it_last_answered_and_shows_its_stale_threshold(
    make_qd, signed_in_client, consul_fleet
):
    qd = consul_and_static(make_qd, None, consul_fleet)
    collect(qd)
    client = signed_in_client(qd)
    page = html_of(client, "/sources")
    consul = source_row(page, "consul")
    assert 'data-freshness="watching"' in consul
    assert re.search(r"watching, last answer <time datetime=\"[^\"]+Z\"", consul)
    assert "last success" not in consul
    # The consul collector's threshold: its wait (4 s) x 1.25 + 15 s.
    assert 'data-stale-after="20"' in consul and ">20 s<" in consul
    static = source_row(page, "static")
    assert "last success <time" in static and "watching" not in static
    assert 'data-stale-after="30"' in static
    # The Overview's Sources card says it the same way.
    overview = source_row(html_of(client, "/"), "consul")
    assert "watching, last answer" in overview
    # So does the API.
    with qd.store.session(write=True) as db:
        auth = {"Authorization": f"Bearer {create_token(db, 'api', 'viewer')}"}
    sources = {s["name"]: s for s in client.get("/api/v1/sources", headers=auth).json["sources"]}
    assert sources["consul"]["blocking"] is True and sources["static"]["blocking"] is False
    assert sources["consul"]["stale_after_s"] == 20.0
    answered = datetime.fromisoformat(sources["consul"]["last_answer_at"])
    started = datetime.fromisoformat(sources["consul"]["last_success_at"])
    assert started <= answered <= datetime.now(UTC)


def test_a_watched_source_that_stopped_answering_is_overdue_then_not_watching(
    make_qd, signed_in_client, consul_fleet
):
    qd = consul_and_static(make_qd, None, consul_fleet)
    collect(qd)
    client = signed_in_client(qd)
    # Past the threshold with no answer: still watching, but overdue, and stale.
    later = datetime.now(UTC) + timedelta(minutes=5)
    qd.clock = lambda: later
    consul = source_row(html_of(client, "/sources"), "consul")
    assert 'data-source-status="stale"' in consul
    assert re.search(r"watching, last answer <time[^>]*>[^<]*</time>: overdue", consul)
    # Consul goes away: the watch fails, and the page says so.
    consul_fleet.stop()
    collect(qd)
    consul = source_row(html_of(client, "/sources"), "consul")
    assert 'data-source-status="error"' in consul
    assert "not watching: last answer <time" in consul


def test_a_watched_source_whose_answers_the_store_refuses_still_says_when_it_answered(
    make_qd, signed_in_client, consul_fleet
):
    qd = consul_and_static(make_qd, None, consul_fleet)
    collect(qd)
    # What the runner holds when Consul answered but the store refused the run record.
    started = datetime.now(UTC).replace(microsecond=0)
    qd.unrecorded.hold(
        HeldRun(
            RunRecord("consul", "consul", started, duration_s=1.5, ok=True),
            store_error="OperationalError: database or disk is full",
            collected=True,
        )
    )
    client = signed_in_client(qd)
    consul = source_row(html_of(client, "/sources"), "consul")
    assert 'data-source-status="error"' in consul
    assert re.search(r"watching, last answer <time[^>]*>[^<]*</time> \(not stored\)", consul)
    assert "database or disk is full" in consul
    with qd.store.session(write=True) as db:
        auth = {"Authorization": f"Bearer {create_token(db, 'api2', 'viewer')}"}
    body = client.get("/api/v1/sources", headers=auth).json
    consul_json = next(s for s in body["sources"] if s["name"] == "consul")
    expected = (started + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    assert consul_json["last_answer_at"] == expected
