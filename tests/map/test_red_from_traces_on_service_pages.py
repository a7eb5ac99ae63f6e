"""Where Prometheus has no figure, the service API and page show the spans' RED, named "traces"."""

from __future__ import annotations

from datetime import UTC, datetime

from app.store.metrics import write_red
from collectors.metrics import RedUpdate, ServiceRed
from tests.map.conftest import service_record


def orders_traffic(maker, n: int = 30, errors: int = 3):
    return [maker.span(t, "orders", kind=2, duration_ms=20, error=t < errors) for t in range(n)]


def test_the_service_api_falls_back_to_the_traces(api, catalog, spans_at, receive, roll_up):
    catalog(service_record("orders"))
    receive(orders_traffic(spans_at()))
    roll_up()
    red = api("/api/v1/services/orders").get_json()["red"]
    assert red["source"] == "traces"
    assert red["rate_rps"] > 0
    assert red["error_ratio"] == 0.1
    assert 15 <= red["p95_ms"] <= 25


def test_without_prometheus_or_spans_there_is_no_red(api, catalog):
    catalog(service_record("orders"))
    assert api("/api/v1/services/orders").get_json()["red"] is None


def test_prometheus_figures_win_over_the_traces(qd, api, catalog, spans_at, receive, roll_up):
    catalog(service_record("orders"))
    receive(orders_traffic(spans_at()))
    roll_up()
    figure = ServiceRed(service="orders", rate_rps=12.5, error_ratio=0.0, p50_ms=3, p95_ms=9)
    with qd.store.session(write=True) as db:
        write_red(db, "prometheus", RedUpdate(datetime.now(UTC), (figure,)))
    red = api("/api/v1/services/orders").get_json()["red"]
    assert (red["source"], red["rate_rps"]) == ("prometheus", 12.5)


def test_the_service_page_names_traces_as_the_source(
    signed_in, catalog, spans_at, receive, roll_up
):
    catalog(service_record("orders"))
    receive(orders_traffic(spans_at()))
    roll_up()
    html = signed_in("viewer").get("/services/orders").get_data(as_text=True)
    assert "data-red-rate" in html
    card = html[html.index("data-red") - 600 : html.index("data-red")]
    assert "traces" in card


def test_the_overview_traffic_card_names_traces_where_prometheus_has_no_figure(
    qd, signed_in, catalog, spans_at, receive, roll_up
):
    catalog(service_record("orders"), service_record("payments"))
    maker = spans_at()
    # 200 spans in under 5 min: above the verdict's 0.1 requests/s, so the ratio counts.
    spans = [*orders_traffic(maker, n=200, errors=20), maker.span(900, "payments", kind=2)]
    receive(spans)
    roll_up()
    figure = ServiceRed(service="payments", rate_rps=12.5, error_ratio=0.0, p50_ms=3, p95_ms=9)
    with qd.store.session(write=True) as db:
        write_red(db, "prometheus", RedUpdate(datetime.now(UTC), (figure,)))
    html = signed_in("viewer").get("/").get_data(as_text=True)
    card = html[html.index('id="traffic"') : html.index("</section>", html.index('id="traffic"'))]
    # orders' errors (10 %) are above the threshold: it comes first, its figures from spans.
    assert card.index('data-traffic-service="orders"') < card.index('"payments"')
    orders = card[card.index('data-traffic-service="orders"') : card.index('"payments"')]
    assert 'data-traffic-source="traces"' in orders and ">10.0<" in orders
    payments = card[card.index('data-traffic-service="payments"') :]
    assert 'data-traffic-source="prometheus"' in payments and ">12.5<" in payments
