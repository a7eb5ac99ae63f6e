"""The Overview's Traffic card: the services that matter most right now, erroring ones first,
each with its figures and their source, what the balancers do with its members, and a stale
mark when the figures' source stopped answering. Figures and balancer rows are what real passes
of source doubles store (the Prometheus side is in tests/prometheus/test_overview_sparklines.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from app.collection.runner import run_pass
from app.config import HAProxyConfig, NginxConfig, PrometheusConfig
from app.factory import create_app
from collectors.balancers import BalancerServer, BalancerUpdate
from collectors.base import InstanceRecord, SourceUnavailable
from collectors.metrics import RedUpdate, ServiceRed
from tests.conftest import sign_in
from tests.web.test_service_pages import check, element, html_of, service, write

NOW = datetime(2026, 12, 2, 2, 0, 30, tzinfo=UTC)
NOWHERE = "http://127.0.0.1:1"
ROW_RE = re.compile(r'<tr data-traffic-service="([^"]*)"')


class Replayed:
    """A source double: each pass returns the records it holds now, or fails with `failing`."""

    def __init__(self, name: str, kind: str, *records) -> None:
        self.name, self.kind, self.records, self.failing = name, kind, list(records), ""

    def collect(self) -> list:
        if self.failing:
            raise SourceUnavailable(self.failing)
        return self.records


def member(backend: str, server: str, address: str, state: str = "up", **more) -> BalancerServer:
    return BalancerServer(backend, server, address, 8080, state, state.upper(), **more)


def node(iid: str, address: str) -> InstanceRecord:
    return InstanceRecord(id=iid, node="n1", address=address, port=8080, checks=(check("passing"),))


@pytest.fixture
def overview(make_qd, make_user):
    """A Quarterdeck with Prometheus, a HAProxy and an nginx configured (none reachable: their
    passes are the doubles'), a catalog of three services, and a viewer's client."""
    qd = make_qd(
        prometheus=PrometheusConfig(url=NOWHERE),
        haproxy=(HAProxyConfig(name="edge", stats_url=f"{NOWHERE}/;csv"),),
        nginx=(NginxConfig(name="push-nginx", status_url=f"{NOWHERE}/status"),),
    )
    qd.clock = lambda: NOW
    write(
        qd,
        NOW,
        service("orders", *(node(f"o-{n}", f"10.0.1.{n}") for n in (1, 2, 3))),
        service("payments", node("p-1", "10.0.2.1")),
        service("ledger", node("l-1", "10.0.3.1")),
    )
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "vera").status_code == 302
    return qd, client


def prometheus_says(qd, *figures: ServiceRed) -> Replayed:
    source = Replayed("prometheus", "prometheus", RedUpdate(NOW, figures))
    assert run_pass(qd, source).ok
    return source


def traffic_card(client) -> str:
    return element(html_of(client, "/"), "section", 'id="traffic"')


def row(card: str, name: str) -> str:
    return element(card, "tr", f'data-traffic-service="{name}"')


def test_a_service_erroring_above_the_threshold_comes_first_with_its_figures_and_source(
    overview,
):
    qd, client = overview
    prometheus_says(
        qd,
        ServiceRed("payments", rate_rps=50.0, error_ratio=0.002, p50_ms=20, p95_ms=80),
        ServiceRed("orders", rate_rps=4.0, error_ratio=0.12, p50_ms=90, p95_ms=420),
        ServiceRed("ledger", rate_rps=20.0, error_ratio=0.01, p50_ms=10, p95_ms=30),
        # Every request failing, but too few a second to mean anything (`min_rate_rps`).
        ServiceRed("quiet-cron", rate_rps=0.01, error_ratio=1.0, p50_ms=5, p95_ms=5),
    )

    card = traffic_card(client)

    assert ROW_RE.findall(card) == ["orders", "payments", "ledger", "quiet-cron"]
    assert "4 services with figures · 1 erroring first, then the busiest" in card
    orders = row(card, "orders")
    assert 'class="row--warning"' in orders
    assert 'href="/services/orders#traffic"' in orders
    assert re.search(r"data-traffic-rate>4\.0<", orders)
    assert re.search(r'text-critical" data-label="Errors" data-traffic-errors>12\.0<', orders)
    assert re.search(r"data-traffic-p95>420<", orders)
    assert 'data-traffic-source="prometheus"' in orders and "data-stale" not in orders
    assert "text-critical" not in row(card, "payments")
    # A name Prometheus reports that no catalog source knows is listed, not linked.
    quiet = row(card, "quiet-cron")
    assert "not in the catalog" in quiet and "href=" not in quiet
    # One request draws every row's sparklines, and without JavaScript it is a link.
    url = "/charts/traffic?" + "&amp;".join(
        f"service={name}" for name in ("orders", "payments", "ledger", "quiet-cron")
    )
    assert f'hx-get="{url}"' in card and f'href="{url}"' in card


def test_the_balancer_phrase_counts_the_members_each_balancer_serves(overview):
    qd, client = overview
    prometheus_says(
        qd,
        ServiceRed("orders", rate_rps=4.0, error_ratio=0.0, p95_ms=40),
        ServiceRed("payments", rate_rps=3.0, error_ratio=0.0, p95_ms=40),
        ServiceRed("ledger", rate_rps=2.0, error_ratio=0.0, p95_ms=40),
    )
    edge = BalancerUpdate(
        "edge",
        "haproxy",
        NOW,
        (
            member("orders", "o-1", "10.0.1.1"),
            member("orders", "o-2", "10.0.1.2", "drain"),
            member("orders", "o-3", "10.0.1.3", "maint"),
            # In the orders backend, but its address is payments': it counts for payments.
            member("orders", "stray", "10.0.2.1", "down"),
        ),
    )
    nginx = BalancerUpdate(
        "push-nginx",
        "nginx",
        NOW,
        tuple(member("orders_up", f"10.0.1.{n}:8080", f"10.0.1.{n}") for n in (1, 2, 3)),
        per_server_sessions=False,
    )
    assert run_pass(qd, Replayed("edge", "haproxy", edge)).ok
    assert run_pass(qd, Replayed("push-nginx", "nginx", nginx)).ok

    card = traffic_card(client)

    orders = element(row(card, "orders"), "td", "data-traffic-balancers")
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", orders)).strip()
    assert words == "edge 1/3 up (1 drain, 1 maint) · push-nginx 3/3 up"
    assert 'data-balancer="edge" data-serving="1" data-members="3"' in orders
    assert "stale" not in orders
    payments = element(row(card, "payments"), "td", "data-traffic-balancers")
    assert 'data-balancer="edge" data-serving="0" data-members="1"' in payments
    assert "text-critical" in payments and "(1 down)" in payments
    assert "no balancer lists it" in row(card, "ledger")

    # A balancer that stops answering keeps its word, marked stale.
    broken = Replayed("push-nginx", "nginx")
    broken.failing = "cannot reach nginx"
    assert not run_pass(qd, broken).ok
    orders = element(row(traffic_card(client), "orders"), "td", "data-traffic-balancers")
    assert "push-nginx 3/3 up" in re.sub(r"<[^>]+>", "", orders)
    assert 'tag--stale" title="this balancer has not answered lately">stale' in orders


def test_figures_from_a_prometheus_that_stopped_answering_are_kept_and_marked_stale(overview):
    qd, client = overview
    source = prometheus_says(qd, ServiceRed("orders", rate_rps=4.0, error_ratio=0.0, p95_ms=40))
    assert "data-stale" not in row(traffic_card(client), "orders")

    source.failing = "cannot reach Prometheus at http://127.0.0.1:1: ConnectionError"
    assert not run_pass(qd, source).ok

    orders = row(traffic_card(client), "orders")
    assert 'class="row--stale"' in orders
    assert re.search(r"data-traffic-rate>4\.0<", orders)  # kept, never zeroed
    assert "data-stale" in element(orders, "td", "data-traffic-source")
    assert "stale since" in orders


def test_without_any_figures_the_card_says_there_is_no_traffic_data(overview):
    _, client = overview
    card = traffic_card(client)
    assert "No traffic data" in card and "Neither Prometheus nor traces" in card
    assert "<table" not in card and "/charts/traffic" not in card


def test_hostile_service_names_are_text_on_the_card_and_in_its_sparklines(overview):
    qd, client = overview
    hostile = '<script>alert(1)</script>"&'
    prometheus_says(qd, ServiceRed(hostile, rate_rps=4.0, error_ratio=0.5, p95_ms=40))

    page = html_of(client, "/")
    assert "<script>alert(1)" not in page
    card = element(page, "section", 'id="traffic"')
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&amp;" in card
    assert "service=%3Cscript%3Ealert(1)%3C/script%3E%22%26" in card

    chart = html_of(client, "/charts/traffic?service=" + hostile.replace("&", "%26"))
    assert "<script>alert(1)" not in chart
    assert 'data-sparklines-of="&lt;script&gt;alert(1)&lt;/script&gt;&#34;&amp;"' in chart
    # The configured Prometheus does not answer: the fragment says so, and draws nothing.
    assert "Prometheus did not answer for the charts: cannot reach Prometheus" in chart
    assert "<polyline" not in chart and "no chart" in chart


def test_the_sparklines_say_when_prometheus_is_not_configured_and_refuse_a_long_list(
    make_qd, make_user
):
    qd = make_qd()
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "vera").status_code == 302
    chart = html_of(client, "/charts/traffic?service=orders")
    assert "No [prometheus] source is configured" in chart and "<polyline" not in chart
    assert 'id="traffic-spark-' in chart and 'hx-swap-oob="true"' in chart
    many = "&".join(f"service=s{n}" for n in range(11))
    refused = client.get(f"/charts/traffic?{many}")
    assert refused.status_code == 400 and "at most 10" in refused.get_data(as_text=True)
    anonymous = create_app(qd=qd).test_client()
    assert anonymous.get("/charts/traffic?service=orders").status_code in (302, 401)
