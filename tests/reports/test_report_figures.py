"""A report's figures are the seeded data's own numbers: availability, incidents, actions,
conflicts, push peaks, slowest operations and SLO budgets, in the stored report, its HTML and
its CSV."""

from __future__ import annotations

import csv
import io
import re

import pytest

from app.config import ReportConfig, SloConfig
from app.models import ReportRow
from app.reports.render import render_csv, render_html, render_text
from app.reports.running import make_report
from tests.reports.conftest import END, START, XSS_OUTPUT, XSS_SERVICE, seed_known_period

DAY = 86400.0


@pytest.fixture
def report(qd):
    """The seeded day, reported on by a 24-hour report made at its end."""
    seed_known_period(qd.store)
    qd.clock = lambda: END
    qd.config = qd.config.replace(reports=(ReportConfig(name="handoff"),))
    report_id = make_report(qd, qd.config.reports[0], "cli")
    with qd.store.session() as db:
        return db.get(ReportRow, report_id)


def test_the_period_is_the_last_24_hours_before_the_report(report):
    assert report.period_start_at == START and report.period_end_at == END
    assert report.figures["period"] == {
        "start_at": "2026-11-30T00:00:00Z",
        "end_at": "2026-12-01T00:00:00Z",
        "hours": 24.0,
    }


def test_availability_per_service_counts_critical_time_and_skips_maintenance(report):
    rows = {r["service"]: r for r in report.figures["availability"]}
    assert set(rows) == {"orders", "payments", "inventory", "push", "gateway", XSS_SERVICE}
    assert rows["orders"]["critical_s"] == 1800
    assert rows["orders"]["availability"] == pytest.approx((DAY - 1800) / DAY)
    # One of the two payments instances critical for an hour makes the service critical.
    assert rows["payments"]["critical_s"] == 3600
    assert rows["payments"]["availability"] == pytest.approx((DAY - 3600) / DAY)
    # Critical since the day before: only the part inside the period counts.
    assert rows["inventory"]["critical_s"] == 3600
    # Two hours of maintenance are not observed time, and are not downtime either.
    assert rows["push"]["observed_s"] == DAY - 7200
    assert rows["push"]["availability"] == 1.0
    assert rows["gateway"]["critical_s"] == 3600
    assert rows[XSS_SERVICE]["critical_s"] == 60
    order = [r["service"] for r in report.figures["availability"]]
    assert order == ["gateway", "inventory", "payments", "orders", XSS_SERVICE, "push"]
    up = (DAY - 1800) + 3 * (DAY - 3600) + (DAY - 7200) + (DAY - 60)
    observed = 5 * DAY + (DAY - 7200)
    assert report.figures["summary"]["fleet_availability"] == pytest.approx(up / observed)


def test_probe_availability_is_the_share_of_its_results_in_the_period(report):
    rows = {r["service"]: r for r in report.figures["availability"]}
    assert rows["orders"]["probes"] == [{"name": "checkout", "availability": 0.97, "results": 100}]
    assert rows["payments"]["probes"] == []


def test_incidents_have_start_end_and_the_check_that_caused_them(report):
    incidents = report.figures["incidents"]
    summary = [(i["service"], i["kind"], i["start_at"], i["end_at"]) for i in incidents]
    assert summary == [
        ("inventory", "health", "2026-11-30T00:00:00Z", "2026-11-30T01:00:00Z"),
        ("orders", "health", "2026-11-30T02:00:00Z", "2026-11-30T02:30:00Z"),
        ("orders", "probe", "2026-11-30T03:00:00Z", "2026-11-30T03:10:00Z"),
        ("payments", "health", "2026-11-30T05:00:00Z", "2026-11-30T06:00:00Z"),
        (XSS_SERVICE, "health", "2026-11-30T08:00:00Z", "2026-11-30T08:01:00Z"),
        ("gateway", "health", "2026-11-30T23:00:00Z", None),
    ]
    by = {(i["service"], i["kind"]): i for i in incidents}
    assert by["orders", "health"]["cause"] == {
        "instance": "orders-1",
        "check": "service:orders-1",
        "output": "HTTP GET /health: 503 Service Unavailable",
    }
    assert by["orders", "health"]["duration_s"] == 1800
    assert by["orders", "probe"]["cause"]["check"] == "probe:checkout"
    assert by["orders", "probe"]["cause"]["output"] == "expected 200, got HTTP 502"
    assert by["payments", "health"]["cause"]["instance"] == "payments-1"
    assert by["payments", "health"]["note"] == "1 of 2 instances critical"
    # Began the day before: the cause is the transition that started it, before the period.
    assert by["inventory", "health"]["began_before"] is True
    assert by["inventory", "health"]["cause"]["output"] == "disk full"
    assert by["gateway", "health"]["duration_s"] == 3600
    summary = report.figures["summary"]
    assert summary["incidents"] == 6 and summary["incidents_ongoing"] == 1
    assert {r["service"]: r["incidents"] for r in report.figures["availability"]}["orders"] == 2


def test_actions_are_the_audit_rows_of_the_period(report):
    actions = report.figures["actions"]
    assert actions["total"] == 3
    assert actions["by_status"] == {"done": 2, "failed": 1}
    assert [a["id"] for a in actions["entries"]] == ["a0", "a1", "a2"]
    assert actions["entries"][2]["status"] == "failed"
    assert actions["entries"][0]["reason"] == "reason 0"


def test_conflicts_count_per_kind_and_rank_the_keys(report):
    conflicts = report.figures["conflicts"]
    assert conflicts["total"] == 10
    counts = conflicts["counts"]
    assert counts["duplicate_inflight"] == 5
    assert counts["payload_mismatch"] == 2
    assert counts["duplicate_completed"] == 3
    assert counts["malformed"] == 1
    assert conflicts["top"] == [
        {"service": "orders", "key": "k1", "count": 7,
         "kinds": ["duplicate_inflight", "payload_mismatch"]},
        {"service": "payments", "key": "k2", "count": 3, "kinds": ["duplicate_completed"]},
    ]  # fmt: skip


def test_push_peaks_come_from_the_balancer_rollups(report):
    push = report.figures["push"]
    assert push["peaks"] == [
        {"balancer": "edge", "backend": "push", "connections": 250, "at": "2026-11-30T04:00:00Z"},
        {"balancer": "ws", "backend": "", "connections": 75, "at": "2026-11-30T06:00:00Z"},
        {"balancer": "edge", "backend": "gw", "connections": 40, "at": "2026-11-30T08:00:00Z"},
    ]
    assert push["total_peak"] == {"connections": 280, "at": "2026-11-30T04:00:00Z"}
    assert report.figures["summary"]["push_peak"] == 280
    bars = push["chart"]
    assert len(bars) == 48 and max(b["connections"] or 0 for b in bars) == 280
    assert bars[8] == {"at": "2026-11-30T04:00:00Z", "connections": 280}


def test_slowest_operations_have_mean_p95_max_and_the_slowest_trace(report):
    slowest = report.figures["slowest_operations"]
    assert [(o["service"], o["operation"]) for o in slowest] == [
        ("orders", "GET /checkout"),
        ("payments", "charge"),
    ]
    checkout = slowest[0]
    assert checkout["count"] == 20 and checkout["errors"] == 1
    assert checkout["mean_ms"] == 10.5
    assert checkout["p95_ms"] == 19.0
    assert checkout["max_ms"] == 20.0
    assert checkout["slowest_trace_id"] == f"{20:032x}"
    assert slowest[1]["mean_ms"] == 5.0


def test_the_html_shows_the_figures_and_escapes_fleet_text(report):
    html = report.html
    assert "97.917%" in html  # orders: 1 - 1800/86400
    assert "HTTP GET /health: 503 Service Unavailable" in html
    assert "<script" not in html.lower()
    assert XSS_SERVICE not in html and XSS_OUTPUT not in html
    assert "&lt;script&gt;alert(&#39;svc&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(&#39;out&#39;)&gt;" in html
    # Readable in a mail client: no stylesheet link, no script, styles inline.
    assert "<link" not in html and "<style" not in html and 'style="' in html


def test_the_csv_has_every_section_with_the_same_numbers(report):
    rows = list(csv.reader(io.StringIO(report.csv)))
    by_section: dict[str, list[list[str]]] = {}
    for row in rows:
        if row:
            by_section.setdefault(row[0], []).append(row)
    availability = {r[1]: r for r in by_section["availability"]}
    assert availability["orders"][2] == f"{(DAY - 1800) / DAY:.6f}"
    assert availability["orders"][6] == "checkout=0.970000 (100 results)"
    assert len(by_section["incident"]) == 6
    assert [r[7] for r in by_section["action"]] == ["a0", "a1", "a2"]
    assert by_section["conflict"][0][1:4] == ["orders", "k1", "7"]
    assert by_section["push_peak"][0][1:4] == ["edge", "push", "250"]
    assert by_section["operation"][0][1:7] == ["orders", "GET /checkout", "20", "1", "10.5", "19.0"]
    # A fleet name a spreadsheet would run as a formula is defused.
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)


def test_the_html_lists_the_longest_incidents_when_there_are_too_many_and_says_so(report):
    figures = dict(report.figures)
    model = figures["incidents"][0]
    figures["incidents"] = [
        {**model, "service": f"svc-{n:03d}", "duration_s": float(n),
         "start_at": f"2026-11-30T{n // 60:02d}:{n % 60:02d}:00Z"}
        for n in range(150)
    ]  # fmt: skip
    html = render_html(figures, title="t")
    listed = re.findall(r'data-incident="(svc-\d+)"', html)
    assert listed == [f"svc-{n:03d}" for n in range(50, 150)]  # the 100 longest, in time order
    assert "The 100 longest of 150 incidents" in html
    # Services up throughout are counted, not listed.
    assert "1 service available throughout" in html and 'data-service="push"' not in html


def test_a_fleet_name_that_a_spreadsheet_would_run_is_defused_in_the_csv(report):
    figures = dict(report.figures)
    figures["availability"] = [
        {**figures["availability"][0], "service": '=HYPERLINK("http://x")'},
        {**figures["availability"][1], "service": "-2+3"},
        {**figures["availability"][2], "service": "-1.5"},
    ]
    rows = [r for r in csv.reader(io.StringIO(render_csv(figures))) if r[:1] == ["availability"]]
    assert [r[1] for r in rows] == ['\'=HYPERLINK("http://x")', "'-2+3", "-1.5"]


@pytest.fixture
def slo_report(qd):
    """The seeded day reported on with three SLOs: gateway, orders (with latency) and XSS."""
    seed_known_period(qd.store)
    qd.clock = lambda: END
    qd.config = qd.config.replace(
        reports=(ReportConfig(name="handoff"),),
        slo=(
            SloConfig(service="orders", objective=95.0, window_d=1, sli="probes",
                      latency_ms=10, latency_objective=95.0),
            SloConfig(service="gateway", objective=99.0, window_d=1, sli="checks"),
            SloConfig(service=XSS_SERVICE, objective=99.0, window_d=1, sli="checks"),
        ),
    )  # fmt: skip
    report_id = make_report(qd, qd.config.reports[0], "cli")
    with qd.store.session() as db:
        return db.get(ReportRow, report_id)


def test_a_report_without_slos_has_an_empty_slo_section(report):
    assert report.figures["slo"] == []
    assert report.figures["summary"]["slo_burning"] is None
    assert 'id="slo"' not in report.html


def test_the_slo_section_has_each_budget_left_and_burn_state_at_the_periods_end(slo_report):
    rows = {r["service"]: r for r in slo_report.figures["slo"]}
    # Burning first, then the least budget left of either objective (orders' latency: none).
    assert [r["service"] for r in slo_report.figures["slo"]] == ["gateway", "orders", XSS_SERVICE]
    # gateway: critical 23:00 to the end. Over the day 3600 of 86400 s bad against a 1 %
    # budget: spent 4.17 times over; over the last hour all of it (burn 100): a fast burn.
    gateway = rows["gateway"]
    assert (gateway["state"], gateway["sli"], gateway["window_d"]) == ("fast", "checks", 1)
    assert gateway["availability"]["error_budget_left"] == 0.0
    assert gateway["availability"]["budget_spent"] == pytest.approx(3600 / DAY / 0.01)
    assert gateway["availability"]["burn_rate"] == {
        "1h": pytest.approx(100), "6h": pytest.approx(100 / 6), "3d": pytest.approx(100 / 72),
    }  # fmt: skip
    assert gateway["latency"] is None
    # orders: probe runs every 10 min from 00:00 to 16:30; the one at 00:00 is on the day's
    # edge (a window is (end - span, end]): 3 of 99 failed over the day, against 5 %.
    orders = rows["orders"]
    assert orders["state"] == "ok"
    assert orders["availability"]["error_budget_left"] == pytest.approx(1 - 3 / 99 / 0.05)
    assert orders["availability"]["burn_rate"]["1h"] is None  # no run in the last hours
    # Over 3 days: the 100 runs and the failed one of 22:00 the day before, 4 of 101 bad.
    assert orders["availability"]["burn_rate"]["3d"] == pytest.approx(4 / 101 / 0.05)
    # Every run of the day took 12 ms: all slower than 10 ms, the latency budget is spent.
    assert orders["latency"]["threshold_ms"] == 10
    assert orders["latency"]["error_budget_left"] == 0.0
    assert orders["latency"]["state"] == "ok"  # spent, but not burning now: no recent run
    # 60 s critical of the day against 1 %.
    assert rows[XSS_SERVICE]["availability"]["error_budget_left"] == pytest.approx(
        1 - 60 / DAY / 0.01
    )
    assert slo_report.figures["summary"]["slo_burning"] == 1


def test_the_slo_section_is_in_the_html_the_csv_and_the_text(slo_report):
    html = slo_report.html
    section = html.split('id="slo"', 1)[1].split("<h2", 1)[0]
    assert re.findall(r'data-slo="([^"]+)" data-objective="(\w+)"', section) == [
        ("gateway", "availability"),
        ("orders", "availability"),
        ("orders", "latency"),
        ("&lt;script&gt;alert(&#39;svc&#39;)&lt;/script&gt;", "availability"),
    ]
    assert "fast burn" in section and "within budget" in section
    assert "39.4%" in section  # orders: 1 - (3/99)/0.05 left
    assert "100.0×" in section and "—" in section  # gateway's 1 h burn; orders' has no runs
    assert "95% under 10 ms" in section
    assert XSS_SERVICE not in html
    assert 'data-summary="SLOs burning"' in html

    rows = [r for r in csv.reader(io.StringIO(slo_report.csv)) if r[:1] == ["slo"]]
    assert [(r[1], r[2]) for r in rows] == [
        ("gateway", "availability"), ("orders", "availability"), ("orders", "latency"),
        (XSS_SERVICE, "availability"),
    ]  # fmt: skip
    gateway = rows[0]
    assert gateway[3:12] == ["checks", "1", "99.0", "0.000000", f"{3600 / DAY / 0.01:.6f}",
                             "fast", "100.000", f"{100 / 6:.3f}", f"{100 / 72:.3f}"]  # fmt: skip
    assert rows[2][12] == "10"  # the latency threshold

    text = render_text(slo_report.figures, title="t")
    assert "SLOs burning: 1 of 3" in text
    assert "- gateway SLO: fast burn, 0.0% of the error budget left" in text
