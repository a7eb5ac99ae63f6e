"""The Traces pages render on both stores: search, waterfall, compare, and the service links."""

from __future__ import annotations

import re
from html import unescape

import pytest

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import StaticServiceConfig
from app.factory import create_app
from tests.conftest import sign_in
from tests.traces.trace_builder import MS, T0, checkout, span, store_spans, trace_id

pytestmark = pytest.mark.parametrize("app_store_url", ["sqlite", "postgresql"], indirect=True)

SCRIPT = "<script>window.__pwned = 1</script>"


@pytest.fixture
def viewer(qd, signed_in):
    store_spans(qd.store.engine, checkout(1, extra=[
        span(1, 9, parent=4, service="inventory", name=SCRIPT, start_ms=95, duration_ms=5,
             attributes={"note": SCRIPT},
             events=({"name": "exception", "time_ns": T0 + 97 * MS,
                      "attributes": {"exception.message": "boom " + SCRIPT}},)),
    ]) + checkout(2, at_ns=T0 + 5 * 10**9, slow_charge_ms=75)[:3])  # fmt: skip
    return signed_in("viewer")


def text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def test_the_traces_page_needs_sign_in(app):
    response = app.test_client().get("/traces")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_the_search_page_lists_results_with_bars_and_a_scatter_that_link_to_traces(viewer):
    html = text(viewer.get("/traces"))
    assert '<select class="select" name="service">' in html
    for n in (1, 2):
        assert f'href="/traces/{trace_id(n)}"' in html
    assert html.count('class="trace-point') == 2
    assert 'class="trace-point trace-point--error"' in html  # a square, not only red
    assert html.count('class="duration-bar__fill') == 2
    assert '<a href="/traces" aria-current="page">Traces</a>' in html  # the nav link


def test_the_search_form_keeps_every_filter_in_the_url(viewer):
    url = (
        "/traces?service=payments&operation=charge&min_ms=70&error=true&tag=retry:true"
        "&order=slowest"
    )
    html = text(viewer.get(url))
    assert '<option value="payments" selected>' in html
    assert '<option value="charge" selected>' in html
    assert 'name="min_ms" value="70"' in html
    assert 'name="tag" value="retry:true"' in html
    assert re.search(r'name="error" value="true"\s+checked', html)
    assert f'href="/traces/{trace_id(2)}"' in html
    assert f'href="/traces/{trace_id(1)}"' not in html  # its charge lasts 60 ms


def test_htmx_gets_the_form_and_results_part_alone(viewer):
    html = text(viewer.get("/traces?service=payments", headers={"HX-Request": "true"}))
    assert html.lstrip().startswith('<div id="trace-search">')
    assert "<html" not in html and 'class="page-header"' not in html
    # The part re-renders the form, so the operation menu follows the chosen service.
    assert '<option value="charge"' in html
    assert f'href="/traces/{trace_id(1)}"' in html


def test_bad_filters_on_the_page_are_a_400_page(viewer):
    response = viewer.get("/traces?min_ms=ten")
    assert response.status_code == 400
    assert "min_ms must be a whole number" in unescape(response.get_data(as_text=True))


def test_the_waterfall_nests_subtrees_marks_the_critical_path_and_escapes_attributes(viewer):
    html = text(viewer.get(f"/traces/{trace_id(1)}"))
    # gateway and orders have children: each is the summary of an open <details>.
    assert html.count('<details class="wf-tree" open') == 3
    assert html.count("wf-row--critical") >= 4
    assert "wf-row--error" in html
    assert SCRIPT not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    for service in ("gateway", "orders", "payments", "inventory"):
        assert f'href="/traces?service={service}"' in html
    assert "http.status_code" in html and ">500<" in html
    assert "1 attribute · 1 event</summary>" in html
    assert '<strong>exception</strong> <span class="muted">+97.0 ms</span>' in html
    assert "boom &lt;script&gt;" in html


def test_an_unknown_trace_page_is_404_and_a_malformed_id_400(viewer):
    assert viewer.get(f"/traces/{'e' * 32}").status_code == 404
    assert viewer.get("/traces/xyz").status_code == 400


def test_the_compare_page_shows_matched_spans_and_those_in_only_one(viewer):
    html = text(viewer.get(f"/traces/compare?a={trace_id(1)}&b={trace_id(2)}"))
    rows = re.findall(r'data-change="(\w+)"', html)
    assert rows.count("removed") == 2  # reserve and the scripted span exist only in trace 1
    assert rows.count("slower") == 1  # charge: 60 ms → 75 ms
    assert "only in A" in html and "slower in B" in html
    assert SCRIPT not in html


def test_the_compare_page_without_ids_asks_for_two(viewer):
    html = text(viewer.get("/traces/compare"))
    assert "Pick two traces" in html
    assert viewer.get(f"/traces/compare?a={trace_id(1)}&b={'d' * 32}").status_code == 404


def test_a_service_page_links_to_its_slow_and_error_traces(make_qd, make_user):
    qd = make_qd(static_services=(StaticServiceConfig(name="orders", instances=("10.0.0.5:80",)),))
    for source in configured_sources(qd.config, qd.clock):
        run_pass(qd, source.collector)
    make_user("vera", "viewer")
    client = create_app(qd=qd).test_client()
    sign_in(client, "vera")
    html = text(client.get("/services/orders"))
    assert 'href="/traces?service=orders&amp;lookback=1h&amp;order=slowest"' in html
    assert 'href="/traces?service=orders&amp;lookback=24h&amp;error=true"' in html


def test_a_very_deep_trace_renders_with_nesting_capped_and_every_span_shown(qd, signed_in):
    chain = [span(9, 1, duration_ms=500)] + [
        span(9, n, parent=n - 1, start_ms=n, duration_ms=500 - 2 * n) for n in range(2, 121)
    ]
    store_spans(qd.store.engine, chain)
    html = text(signed_in("viewer").get(f"/traces/{trace_id(9)}"))
    assert html.count('<details class="wf-tree" open') == 32  # NEST_MAX: deeper stays flat
    assert html.count('<details class="wf-info ') == 120
    assert html.count("<details") == html.count("</details>")
