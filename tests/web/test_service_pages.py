"""The Services list, one service's page and the Overview, over data written the real way."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import ConsulConfig
from app.factory import create_app
from app.store.catalog import apply_catalog_update
from app.views.services import PAGE_SIZE
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord
from demo.consul import ConsulDouble
from demo.fleet_seed import seed_demo_fleet
from tests.conftest import sign_in

# The pages' clock: the 24 h window is [T0, NOW].
T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=24)


def check(status: str, output: str = "", check_id: str = "http", **extra) -> CheckRecord:
    name = extra.pop("name", check_id)
    return CheckRecord(check_id=check_id, name=name, status=status, output=output, **extra)


def maintenance(reason: str, instance_id: str) -> CheckRecord:
    return CheckRecord(
        f"_service_maintenance:{instance_id}",
        "Service Maintenance Mode",
        "critical",
        "Service is under maintenance",
        notes=reason,
        kind="maintenance",
    )


def instance(iid: str, *checks: CheckRecord, node: str = "n1", version: str = "1.0.0"):
    return InstanceRecord(
        id=iid, node=node, address="10.0.0.5", port=8080, version=version, checks=checks
    )


def service(name: str, *instances: InstanceRecord, **fields) -> ServiceRecord:
    return ServiceRecord(name=name, instances=instances, **fields)


def write(qd, at: datetime, *services: ServiceRecord, complete: bool = True) -> None:
    with qd.store.session() as db:
        apply_catalog_update(
            db, "consul", CatalogUpdate(observed_at=at, services=services, complete=complete)
        )


@pytest.fixture
def pages(make_qd, make_user):
    """A Quarterdeck on a fixed clock, and a signed-in viewer's client for it."""
    qd = make_qd()
    qd.clock = lambda: NOW
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "vera").status_code == 302
    return qd, client


def html_of(client, path: str, **headers) -> str:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def hrefs(html: str) -> list[str]:
    """Where the page's links point."""
    return [unescape(h) for h in re.findall(r'<a\b[^>]*\bhref="([^"]*)"', html)]


def element(html: str, tag: str, attr: str) -> str:
    """The markup of the first <tag ... attr ...> element, up to its closing tag."""
    start = html.index(attr)
    start = html.rindex(f"<{tag}", 0, start)
    return html[start : html.index(f"</{tag}>", start)]


SEGMENT_RE = re.compile(
    r'<rect class="health-strip__seg--(\w+)" x="([\d.]+)" y="0" width="([\d.]+)" height="20">'
    r"<title>([^<]*)</title>"
)


def strip_of(markup: str) -> list[tuple[str, float, float, str]]:
    """The segments of the first health strip in the markup: (state, start %, width %, title)."""
    svg = markup[markup.index("<svg") : markup.index("</svg>")]
    found = [
        (state, float(x) / 10, float(w) / 10, unescape(title))
        for state, x, w, title in SEGMENT_RE.findall(svg)
    ]
    return sorted(found, key=lambda seg: seg[1])


# -- the service page ---------------------------------------------------------------------------


def test_owner_docs_and_runbook_link_only_when_they_are_http_urls(pages):
    qd, client = pages
    meta = {
        "owner": "team-payments",
        "docs": "https://docs.example.internal/payments",
        "runbook": "javascript:alert(1)",
        "dashboard": "http://grafana.example.internal/d/pay",
        "wiki": " https://leading-space.example",
        "data": "data:text/html,<b>x</b>",
    }
    write(qd, T0, service("payments", instance("payments-1", check("passing")), meta=meta))
    page = html_of(client, "/services/payments")
    links = hrefs(page)
    assert "https://docs.example.internal/payments" in links
    assert "http://grafana.example.internal/d/pay" in links
    assert not [h for h in links if h.strip().lower().startswith(("javascript:", "data:"))]
    assert "https://leading-space.example" not in " ".join(links)
    about = element(page, "dd", 'data-about="runbook"')
    assert "javascript:alert(1)" in about and "<a" not in about
    assert "team-payments" in element(page, "dd", 'data-about="owner"')
    # The header offers Docs as a button, but no Runbook button for a non-http value.
    assert 'class="btn" href="https://docs.example.internal/payments"' in page
    assert ">Runbook</a>" not in page
    assert "data:text/html,&lt;b&gt;x&lt;/b&gt;" in page  # the meta table shows it, as text


def test_meta_keys_for_owner_docs_and_runbook_come_from_config(make_qd, make_user):
    from app.config import CatalogConfig

    qd = make_qd(catalog=CatalogConfig(owner_meta="team", docs_meta="wiki", runbook_meta="rb"))
    qd.clock = lambda: NOW
    meta = {"team": "edge", "wiki": "https://wiki.example/edge", "rb": "https://rb.example/edge"}
    write(qd, T0, service("edge", instance("edge-1", check("passing")), meta=meta))
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    sign_in(client, "vera")
    page = html_of(client, "/services/edge")
    assert "edge" in element(page, "dd", 'data-about="team"')
    assert 'class="btn btn--primary" href="https://rb.example/edge"' in page


def test_upstreams_and_used_by_link_to_those_services(pages):
    qd, client = pages
    write(
        qd,
        T0,
        service("gateway", instance("gw-1", check("passing")), upstreams=("orders",)),
        service("orders", instance("o-1", check("passing")), upstreams=("payments", "ledger")),
        service("payments", instance("p-1", check("critical", "HTTP 503"))),
    )
    page = html_of(client, "/services/orders")
    calls = element(page, "dd", "data-upstreams")
    assert 'href="/services/payments"' in calls and 'data-health="critical"' in calls
    assert "ledger" in calls and 'href="/services/ledger"' not in calls
    assert "not in the catalog" in calls
    used_by = element(page, "dd", "data-used-by")
    assert 'href="/services/gateway"' in used_by
    assert "no service lists it" in element(
        html_of(client, "/services/gateway"), "dd", "data-used-by"
    )


def test_instances_show_checks_output_notes_tags_version_and_maintenance_reason(pages):
    qd, client = pages
    write(
        qd,
        T0,
        service(
            "payments",
            instance(
                "payments-1",
                check(
                    "critical",
                    'HTTP GET /healthz: 503\n{"db": "down"}',
                    notes="pages the payments on-call",
                ),
            ),
            instance("payments-2", check("passing", "200 OK"), maintenance("deploy 3.1.1", "p2")),
            InstanceRecord(
                id="payments-3",
                node="n3",
                tags=("canary", "az-b"),
                version="3.2.0-rc.1",
                checks=(check("warning", "slow: p95 1.9 s"),),
            ),
        ),
    )
    page = html_of(client, "/services/payments")
    critical = element(page, "tbody", 'data-instance="payments-1"')
    assert 'class="row--critical"' in critical
    assert (
        '<pre class="output">HTTP GET /healthz: 503\n{&#34;db&#34;: &#34;down&#34;}</pre>'
        in critical
    )
    assert "pages the payments on-call" in critical
    held = element(page, "tbody", 'data-instance="payments-2"')
    assert 'data-health="maintenance"' in held and "Maintenance: deploy 3.1.1" in held
    canary = element(page, "tbody", 'data-instance="payments-3"')
    assert '<span class="tag">canary</span>' in canary and "3.2.0-rc.1" in canary
    assert "slow: p95 1.9 s" in canary
    # Worst first: critical, then warning, then maintenance.
    order = [page.index(f'data-instance="payments-{n}"') for n in (1, 3, 2)]
    assert order == sorted(order)


def test_the_strips_are_built_from_transitions_with_their_share_of_the_window(pages):
    qd, client = pages
    ok = lambda: instance("api-1", check("passing", "200 OK"))  # noqa: E731
    steady = instance("api-2", check("passing", "200 OK"), node="n2")

    def at(hours, *first):
        write(qd, T0 + timedelta(hours=hours), service("api", *first, steady))

    at(-3, ok())  # first seen before the window: the window starts passing
    at(6, instance("api-1", check("critical", "HTTP 503")))
    at(9, ok())
    at(18, instance("api-1", check("warning", "slow")))
    page = html_of(client, "/services/api")
    expected = [
        ("passing", 0.0, 25.0, "passing until 06:00 UTC"),
        ("critical", 25.0, 12.5, "critical 06:00–09:00 UTC, 3 h (HTTP 503)"),
        ("passing", 37.5, 37.5, "passing 09:00–18:00 UTC, 9 h"),
        ("warning", 75.0, 25.0, "warning since 18:00 UTC, 6 h so far (slow)"),
    ]
    assert strip_of(element(page, "tbody", 'data-instance="api-1"')) == expected
    assert strip_of(element(page, "tbody", 'data-instance="api-2"')) == [
        ("passing", 0.0, 100.0, "passing throughout, 24 h")
    ]
    # The service is as bad as its worst instance, and says how many were.
    service_strip = strip_of(element(page, "section", 'id="service-strip"'))
    assert [s[:3] for s in service_strip] == [s[:3] for s in expected]
    assert service_strip[1][3] == "critical 06:00–09:00 UTC, 3 h (1 of 2 instances critical)"
    assert re.search(r"Last 24 h: 1[23]% critical, 25% warning, 6[23]% passing", page)
    # The list shows the same strip, small.
    row = element(html_of(client, "/services"), "tr", 'data-service="api"')
    assert [s[:3] for s in strip_of(row)] == [s[:3] for s in expected]


def test_nothing_is_drawn_before_a_service_was_first_seen(pages):
    qd, client = pages
    write(qd, T0 + timedelta(hours=18), service("new", instance("new-1", check("passing"))))
    write(qd, T0 + timedelta(hours=21), service("new", instance("new-1", check("critical", "x"))))
    segments = strip_of(element(html_of(client, "/services/new"), "section", 'id="service-strip"'))
    assert [s[:3] for s in segments] == [("passing", 75.0, 12.5), ("critical", 87.5, 12.5)]


def test_gone_instances_are_faded_with_when_they_left_and_transitions_are_newest_first(pages):
    qd, client = pages
    one, two = instance("w-1", check("passing")), instance("w-2", check("passing"), node="n2")
    write(qd, T0 + timedelta(hours=1), service("worker", one, two))
    write(
        qd,
        T0 + timedelta(hours=4),
        service("worker", one, instance("w-2", check("critical"), node="n2")),
    )
    write(qd, T0 + timedelta(hours=10), service("worker", one))
    page = html_of(client, "/services/worker")
    gone = element(page, "tbody", 'data-instance="w-2"')
    assert 'class="row--gone"' in gone and 'data-health="gone"' in gone
    assert 'left <time datetime="2026-11-26T10:00:00Z"' in gone
    assert strip_of(gone)[-1][:3] == ("gone", pytest.approx(41.667), pytest.approx(58.333))
    transitions = element(page, "section", 'id="transitions"')
    changes = re.findall(r'<time datetime="([^"]+)"', transitions)
    assert changes == ["2026-11-26T10:00:00Z", "2026-11-26T04:00:00Z"]
    assert "left the catalog" in transitions


def test_a_service_that_left_keeps_its_page_and_the_list_counts_it_as_hidden(pages):
    qd, client = pages
    write(qd, T0, service("old", instance("old-1", check("passing"))), service("new"))
    write(qd, T0 + timedelta(hours=20), service("new"))
    page = html_of(client, "/services/old")
    assert "This service left the catalog" in page and 'data-health="gone"' in page
    listing = html_of(client, "/services")
    assert 'data-service="old"' not in listing and 'data-hidden-gone="1"' in listing
    assert 'href="/services?gone=1"' in listing
    assert 'data-service="old"' in html_of(client, "/services?gone=1")
    assert 'data-service="old"' in html_of(client, "/services?health=gone")


def test_the_page_follows_its_live_topic_and_a_source_going_stale(make_qd, make_user):
    qd = make_qd(consul=ConsulConfig(url="http://127.0.0.1:1", token_env="", wait_s=1))
    write(qd, datetime.now(UTC), service("orders", instance("o-1", check("passing"))))
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    sign_in(client, "vera")
    page = html_of(client, "/services/orders")
    assert 'data-live-topic="service:orders sources actions"' in page
    collector = configured_sources(qd.config, qd.clock)[0].collector
    try:
        assert not run_pass(qd, collector).ok
    finally:
        collector.close()
    page = html_of(client, "/services/orders")
    assert "stale-banner" in page and "Source consul: cannot reach Consul" in page
    assert "data-stale" in element(page, "h1", "page-header__title")


def test_an_unknown_service_is_a_404_page_that_names_it_safely(pages):
    _, client = pages
    response = client.get("/services/<b>nope</b>")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "&lt;b&gt;nope&lt;/b&gt;" in body and "<b>nope</b>" not in body


def test_htmx_requests_get_the_live_fragment_only(pages):
    qd, client = pages
    write(qd, T0, service("orders", instance("o-1", check("passing"))))
    for path, root in [
        ("/services/orders", 'id="service-detail"'),
        ("/services?health=passing", 'id="services-table"'),
        ("/", 'id="overview-body"'),
    ]:
        full = html_of(client, path)
        part = html_of(client, path, **{"HX-Request": "true"})
        assert full.lstrip().lower().startswith("<!doctype html>")
        assert "<html" not in part and "<body" not in part and "filter-bar" not in part
        first_tag = re.search(r"<[a-z]+ [^>]*>", part).group(0)  # the fragment's root
        assert root in first_tag and "data-live-topic" in first_tag and "data-live-src" in first_tag
    part = html_of(client, "/services?health=passing", **{"HX-Request": "true"})
    assert 'data-live-src="/services?health=passing"' in part


# -- the Services list --------------------------------------------------------------------------


def test_the_list_filters_by_health_tag_and_search_with_a_plain_get_form(pages):
    qd, client = pages
    write(
        qd,
        T0,
        service("orders", instance("o-1", check("critical")), tags=("api", "web")),
        service("payments", instance("p-1", check("passing")), tags=("api",)),
        service("search", instance("s-1", check("warning")), tags=("internal",)),
    )

    def names(query: str) -> list[str]:
        return re.findall(r'<tr data-service="([^"]+)"', html_of(client, "/services" + query))

    assert names("") == ["orders", "search", "payments"]  # worst first
    assert names("?health=critical") == ["orders"]
    assert names("?tag=api") == ["orders", "payments"]
    assert names("?q=PAY") == ["payments"]
    assert names("?q=internal") == ["search"]  # search covers tags and versions too
    assert names("?tag=api&health=passing") == ["payments"]
    page = html_of(client, "/services")
    assert '<form class="filter-bar" method="get" action="/services"' in page
    assert client.get("/services?health=green").status_code == 400


def test_the_list_hides_sidecar_proxies_until_asked_and_says_so(pages, make_token):
    qd, client = pages
    write(
        qd,
        T0,
        service("web", instance("web-1", check("passing"))),
        service(
            "web-sidecar-proxy",
            instance("web-1-sidecar-proxy", check("passing")),
            kind="connect-proxy",
            meta={"connect_destination": "web"},
        ),
    )
    page = html_of(client, "/services")
    assert 'data-service="web-sidecar-proxy"' not in page
    assert 'data-hidden-proxies="1"' in page and 'href="/services?proxies=1"' in page
    shown = html_of(client, "/services?proxies=1")
    assert 'data-service="web-sidecar-proxy"' in shown and "connect-proxy" in shown
    # The service's page shows its proxy's instances in their own section.
    detail = html_of(client, "/services/web")
    proxies = element(detail, "section", 'id="sidecar-proxies"')
    assert "web-1-sidecar-proxy" in proxies and 'href="/services/web-sidecar-proxy"' in proxies
    assert "Proxy for" in html_of(client, "/services/web-sidecar-proxy")
    # The API still returns every service.
    token = make_token("api", "viewer")
    body = client.get("/api/v1/services", headers={"Authorization": f"Bearer {token}"}).json
    assert {s["name"] for s in body["services"]} == {"web", "web-sidecar-proxy"}


def test_a_real_consul_mesh_keeps_proxies_with_the_service_they_front(make_qd, make_user):
    consul = ConsulDouble()
    seed_demo_fleet(consul)
    consul.start()
    qd = make_qd(consul=ConsulConfig(url=consul.url, token_env="", wait_s=2))
    collector = configured_sources(qd.config, qd.clock)[0].collector
    try:
        assert run_pass(qd, collector).ok
    finally:
        collector.close()
        consul.stop()
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    sign_in(client, "vera")
    listed = re.findall(r'<tr data-service="([^"]+)"', html_of(client, "/services"))
    assert sorted(listed) == ["consul", "gateway", "inventory", "orders", "payments", "push"]
    orders = html_of(client, "/services/orders")
    assert "orders-1-sidecar-proxy" in element(orders, "section", 'id="sidecar-proxies"')
    calls = element(orders, "dd", "data-upstreams")
    assert 'href="/services/inventory"' in calls and 'href="/services/payments"' in calls
    assert 'href="/services/gateway"' in element(orders, "dd", "data-used-by")
    assert "https://runbooks.example.internal/orders" in hrefs(orders)
    overview = html_of(client, "/")
    assert '<span class="stat__value">6</span>' in element(overview, "a", 'data-stat="services"')


def test_a_long_list_shows_a_page_worst_first_and_counts_what_it_does_not_show(pages, make_token):
    qd, client = pages
    total = PAGE_SIZE + 5
    status = lambda n: "critical" if n % 50 == 0 else "passing"  # noqa: E731
    fleet = [service(f"svc-{n:03d}", instance(f"svc-{n}", check(status(n)))) for n in range(total)]
    write(qd, T0, *fleet)
    critical = [f"svc-{n:03d}" for n in range(0, total, 50)]
    page = html_of(client, "/services")
    rows = re.findall(r'<tr data-service="([^"]+)"', page)
    assert len(rows) == PAGE_SIZE and rows[: len(critical)] == critical
    assert f"Showing 1–{PAGE_SIZE} of {total}, worst first" in page
    assert f'data-total="{total}"' in page and f"{len(critical)} critical" in page
    assert f'href="/services?offset={PAGE_SIZE}"' in page
    rest = re.findall(
        r'<tr data-service="([^"]+)"', html_of(client, f"/services?offset={PAGE_SIZE}")
    )
    assert len(rest) == 5 and not set(rest) & set(rows)
    token = make_token("api", "viewer")
    auth = {"Authorization": f"Bearer {token}"}
    assert len(client.get("/api/v1/services", headers=auth).json["services"]) == 100  # default
    assert len(client.get("/api/v1/services?limit=5000", headers=auth).json["services"]) == total
    paged = client.get(f"/api/v1/services?limit=10&offset={PAGE_SIZE}", headers=auth).json
    assert len(paged["services"]) == 5
    assert client.get("/api/v1/services?limit=ten", headers=auth).status_code == 400


# -- the Overview -------------------------------------------------------------------------------


def test_the_overview_puts_the_worst_first_links_transitions_and_leaves_proxies_out(pages):
    qd, client = pages
    fleet = lambda status: (  # noqa: E731
        service("orders", instance("o-1", check(status, "HTTP 503"))),
        service("payments", instance("p-1", check("warning", "slow"))),
        service("ledger", instance("l-1", check("passing"))),
        service(
            "orders-sidecar-proxy",
            instance("o-1-sidecar-proxy", check("critical")),
            kind="connect-proxy",
            meta={"connect_destination": "orders"},
        ),
    )
    write(qd, T0 + timedelta(hours=1), *fleet("passing"))
    write(qd, T0 + timedelta(hours=2), *fleet("critical"))
    page = html_of(client, "/")
    attention = re.findall(
        r'<tr data-service="([^"]+)"', element(page, "section", "needs-attention")
    )
    assert attention == ["orders", "payments"]
    assert '<span class="stat__value">3</span>' in element(page, "a", 'data-stat="services"')
    assert "1 sidecar proxy not counted" in page
    assert '<span class="stat__value">1</span>' in element(page, "a", 'data-stat="critical"')
    recent = element(page, "section", 'id="recent-transitions"')
    assert 'href="/services/orders"' in recent
    assert re.search(r'href="/services/orders#instance-\d+"', recent)
    assert "HTTP 503" in recent


def test_a_strip_says_what_part_of_the_window_came_before_the_service_was_first_seen(pages):
    qd, client = pages
    # First seen 6 h ago: a quarter of the window is passing, the rest was never observed.
    write(qd, NOW - timedelta(hours=6), service("fresh", instance("f-1", check("passing", "ok"))))
    page = html_of(client, "/services/fresh")
    assert re.search(r"Last 24 h: 2[45]% passing, 7[56]% before it was first seen", page)
