"""How the push counts are put together from the sources' numbers (app/queries/push.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.queries.push import (
    BalancerTotal,
    CatalogMember,
    GaugeCount,
    MemberCount,
    count_connections,
)
from app.queries.push.chart import build_chart, current_point, with_current_point

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def member(server, sessions, *, state="up", stale=False, service="push", instance=None,
           balancer="edge", kind="haproxy", since=None, status=None):  # fmt: skip
    return MemberCount(
        balancer=balancer,
        kind=kind,
        backend="be",
        server=server,
        service=service,
        instance=instance or server,
        state=state,
        status=status or state.upper(),
        sessions=sessions,
        observed_at=NOW,
        stale=stale,
        state_since=since,
    )


def gauge(instance, value, *, stale=False, service="push"):
    return GaugeCount(service, instance, value, NOW, stale)


def only_service(result):
    assert len(result.services) == 1
    return {i.instance: i for i in result.services[0].instances}


def test_haproxy_counts_come_first_and_name_their_balancer():
    result = count_connections(
        [member("s1", 5), member("s2", 3)], [gauge("s1", 99), gauge("s2", 99)], []
    )
    counted = only_service(result)
    assert counted["s1"].connections == 5
    assert counted["s1"].source == "edge"
    assert counted["s1"].source_kind == "haproxy"
    assert result.total == 8
    body = result.to_json()
    assert body["total"] == 8
    first = body["by_service"][0]["instances"][0]
    assert {"instance", "connections", "source"} <= first.keys()
    # The other source's number is still shown beside the chosen one.
    assert {s["source"] for s in first["sources"]} == {"edge", "prometheus"}


def test_behind_haproxy_and_nginx_at_once_the_instances_own_gauge_is_the_whole_count():
    # HAProxy holds 50 of push-1's connections, nginx (which cannot say) the other 50.
    members = [
        member("push-1", 50, instance="push-1"),
        member("127.0.0.1:9000", None, kind="nginx", balancer="push-nginx", instance="push-1"),
    ]
    counted = only_service(count_connections(members, [gauge("push-1", 100)], []))["push-1"]
    assert (counted.connections, counted.source) == (100, "prometheus")
    # Without a fresh gauge, HAProxy's part is the best there is, and says whose it is.
    stale = count_connections(members, [gauge("push-1", 100, stale=True)], [])
    assert only_service(stale)["push-1"].source == "edge"


def test_prometheus_gauge_counts_what_no_balancer_counts():
    nginx_member = member("10.0.0.1:9000", None, kind="nginx", balancer="push-nginx",
                          instance="push-1")  # fmt: skip
    catalog = [CatalogMember("push", "push-1", "10.0.0.1", 9000)]
    result = count_connections([nginx_member], [gauge("10.0.0.1:9000", 12)], [], catalog)
    counted = only_service(result)
    assert list(counted) == ["push-1"]
    assert counted["push-1"].connections == 12
    assert counted["push-1"].source == "prometheus"


def test_a_fresh_gauge_wins_over_a_stale_balancer_but_a_stale_number_is_never_zero():
    result = count_connections([member("s1", 7, stale=True)], [gauge("s1", 6)], [])
    assert only_service(result)["s1"].connections == 6
    assert only_service(result)["s1"].source == "prometheus"

    result = count_connections([member("s1", 7, stale=True)], [], [])
    counted = only_service(result)["s1"]
    assert counted.connections == 7
    assert counted.stale
    assert result.stale
    assert result.to_json()["by_service"][0]["instances"][0]["stale"] is True


def test_nginx_totals_are_shown_per_balancer_and_say_they_are_not_per_server():
    totals = [BalancerTotal("push-nginx", "nginx", 41, False, NOW, False)]
    result = count_connections([member("10.0.0.1:9000", None, kind="nginx")], [], totals)
    assert result.total is None
    body = result.to_json()
    assert body["balancers"][0]["connections"] == 41
    assert "not per server" in body["balancers"][0]["note"]
    assert "only their totals" in body["uncounted_reason"]


def test_nothing_configured_says_what_could_count_connections():
    result = count_connections([], [], [])
    assert result.total is None
    assert "[[haproxy]]" in result.uncounted_reason
    assert result.to_json()["by_service"] == []


def test_an_instance_holding_more_than_twice_its_fair_share_is_imbalanced():
    result = count_connections([member("s1", 70), member("s2", 5), member("s3", 5)], [], [])
    # fair share = 80 / 3 = 26.7; 70 > 53.3
    assert [(i.instance, round(i.fair_share, 1)) for i in result.imbalance] == [("s1", 26.7)]
    assert only_service(result)["s1"].imbalanced
    assert not only_service(result)["s2"].imbalanced


def test_exactly_twice_the_fair_share_is_not_yet_imbalanced():
    # fair share = 60 / 3 = 20; s1 holds 40, exactly twice.
    result = count_connections([member("s1", 40), member("s2", 10), member("s3", 10)], [], [])
    assert result.imbalance == []


def test_draining_instances_are_not_given_a_fair_share():
    members = [member("s1", 50, state="drain"), member("s2", 30), member("s3", 10)]
    result = count_connections(members, [], [])
    # Active: s2, s3; fair share 90 / 2 = 45; nobody active holds more than 90.
    assert result.imbalance == []
    assert only_service(result)["s1"].fair_share is None
    assert only_service(result)["s1"].active is False


def test_drain_progress_from_observations_reports_rate_and_time_left():
    started = NOW - timedelta(minutes=2)
    history = [
        (NOW - timedelta(minutes=3), 40.0),
        (started, 40.0),
        (NOW - timedelta(minutes=1), 30.0),
        (NOW, 20.0),
    ]
    draining = member("s1", 20, state="drain", since=started)
    result = count_connections([draining, member("s2", 5)], [], [],
                               history={("edge", "be", "s1"): history})  # fmt: skip
    (drain,) = result.drains
    assert drain.at_start == 40
    assert drain.connections == 20
    assert drain.falling_per_min == 10  # 20 lost over 2 minutes
    assert drain.time_left_s == 120
    assert drain.source == "edge"
    body = result.to_json()["drains"][0]
    assert body["started_at"] == "2026-12-02T00:58:00Z"
    assert body["drained"] is False


def test_a_long_drain_is_measured_over_its_latest_minutes():
    started = NOW - timedelta(minutes=30)
    history = [(started, 100.0), (NOW - timedelta(minutes=5), 12.0), (NOW, 10.0)]
    draining = member("s1", 10, state="maint", since=started)
    result = count_connections([draining], [], [], history={("edge", "be", "s1"): history})
    (drain,) = result.drains
    assert drain.at_start == 100
    assert round(drain.falling_per_min, 1) == 0.4  # 2 over 5 minutes
    assert round(drain.time_left_s) == 1500


def test_a_drained_server_has_no_time_left_and_a_stuck_one_has_no_estimate():
    done = member("s1", 0, state="drain", since=NOW - timedelta(minutes=1))
    stuck = member("s2", 9, state="drain", since=NOW - timedelta(minutes=1))
    history = {
        ("edge", "be", "s1"): [(NOW - timedelta(minutes=1), 4.0), (NOW, 0.0)],
        ("edge", "be", "s2"): [(NOW - timedelta(minutes=1), 9.0), (NOW, 9.0)],
    }
    result = count_connections([done, stuck], [], [], history=history)
    by_server = {d.server: d for d in result.drains}
    assert by_server["s1"].drained and by_server["s1"].time_left_s == 0
    assert by_server["s2"].falling_per_min == 0
    assert by_server["s2"].time_left_s is None


def test_an_nginx_down_server_drains_with_the_gauge_count():
    down = member("10.0.0.1:9000", None, kind="nginx", balancer="push-nginx", state="down",
                  instance="push-1")  # fmt: skip
    catalog = [CatalogMember("push", "push-1", "10.0.0.1", 9000)]
    result = count_connections([down], [gauge("push-1", 4)], [], catalog)
    (drain,) = result.drains
    assert drain.connections == 4
    assert drain.source == "prometheus"


def test_hostile_names_pass_through_as_data():
    name = '<img src=x onerror="alert(1)">'
    result = count_connections([member("s1", 1, service=name)], [], [])
    assert result.to_json()["by_service"][0]["service"] == name


def test_the_chart_puts_services_on_one_grid_with_their_total():
    series = {
        "push": [(NOW - timedelta(minutes=2), 4.0), (NOW - timedelta(minutes=1), 6.0)],
        "chat": [(NOW - timedelta(minutes=1), 1.0)],
        "old": [(NOW - timedelta(hours=2), 9.0)],  # outside the hour
    }
    chart = build_chart(series, now=NOW, step_s=60, source="rollups")
    assert [s["key"] for s in chart.series] == ["total", "service:chat", "service:push"]
    assert chart.series[0]["values"] == [4, 7]
    assert chart.series[1]["values"] == [None, 1]  # a gap, not a zero
    assert chart.summary() == {"last": 7, "low": 4, "high": 7}


def test_the_point_of_now_draws_a_stale_number_as_a_gap():
    fresh = count_connections([member("s1", 5)], [], [])
    stale = count_connections([member("s1", 5, stale=True)], [], [])
    assert current_point(fresh, NOW)["series"][0]["values"] == [5]
    assert current_point(stale, NOW)["series"][0]["values"] == [None]
    chart = build_chart({"push": [(NOW - timedelta(minutes=1), 3.0)]}, now=NOW, step_s=60,
                        source="rollups")  # fmt: skip
    chart = with_current_point(chart, fresh, NOW)
    assert chart.series[0]["values"] == [3, 5]
    assert chart.times[-1] == int(NOW.timestamp())
