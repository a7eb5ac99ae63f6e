"""The haproxy_factory fixture runs a real HAProxy with stats and an admin runtime API."""

import csv
import io

from tests.fixtures.processes import http_get, wait_for


def read_stats(csv_text):
    """Return {(pxname, svname): row} from HAProxy's stats CSV."""
    assert csv_text.startswith("# pxname,svname,")
    rows = csv.DictReader(io.StringIO(csv_text.removeprefix("# ")))
    return {(row["pxname"], row["svname"]): row for row in rows}


def test_haproxy_balances_over_the_given_servers_and_lists_them_in_stats(
    haproxy_factory, static_site_factory
):
    one = static_site_factory({"index.html": "one"})
    two = static_site_factory({"index.html": "two"})
    haproxy = haproxy_factory([one.address, two.address])

    answers = {http_get(haproxy.frontend_url)[1] for _ in range(4)}
    status, body = http_get(haproxy.stats_csv_url)

    assert answers == {"one", "two"}
    assert status == 200
    stats = read_stats(body)
    assert {("be", "s1"), ("be", "s2"), ("be", "BACKEND"), ("fe", "FRONTEND")} <= stats.keys()


def test_runtime_api_drains_a_server(haproxy_factory, static_site_factory):
    site = static_site_factory({"index.html": "ok"})
    haproxy = haproxy_factory([site.address])
    wait_for(
        lambda: read_stats(haproxy.send_runtime("show stat"))["be", "s1"]["status"] == "UP",
        "s1 up",
    )

    answer = haproxy.send_runtime("set server be/s1 state drain")

    assert answer.strip() == ""
    assert read_stats(haproxy.send_runtime("show stat"))["be", "s1"]["status"] == "DRAIN"
