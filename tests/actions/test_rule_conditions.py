"""Each rule condition on real data: a failing probe, RED figures, span minutes; the replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.collection.probes import run_and_record
from app.config import ProbeConfig, RuleConfig, SloConfig
from app.models import ProbeResultRow, ProbeState, SpanRedMinute
from app.rules.conditions import RULE_CONDITIONS
from app.rules.replay import replay_rules
from app.runbooks.book import parse_runbooks
from app.store.metrics import write_red
from collectors.metrics import RedUpdate, ServiceRed
from tests.actions.test_rules import BOOK, SHED_BOOK

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def find(qd, name: str, **params):
    with qd.store.session() as db:
        return RULE_CONDITIONS[name].find(db, qd.clock(), params, qd.config)


def test_probe_failing_names_the_service_with_the_probe_result_and_marks_it_stale_later(
    qd, static_site_factory
):
    site = static_site_factory({"health": "ok"})
    probe = ProbeConfig(name="checkout", service="orders", url=f"{site.url}/missing",
                        interval_s=30)  # fmt: skip
    run_and_record(qd, probe)

    found = find(qd, "probe_failing")

    assert list(found) == ["orders"]
    assert found["orders"]["probes"][0]["status"] == 404
    assert found["orders"]["stale"] == []
    assert find(qd, "probe_failing", probe="other") == {}
    later = qd.clock() + timedelta(minutes=5)
    qd.clock = lambda: later
    assert find(qd, "probe_failing")["orders"]["stale"] == ["probe checkout"]


def test_error_ratio_above_takes_the_threshold_and_the_minimum_rate(qd):
    with qd.store.session(write=True) as db:
        write_red(db, "prometheus", RedUpdate(qd.clock(), (
            ServiceRed("orders", rate_rps=5.0, error_ratio=0.2),
            ServiceRed("quiet", rate_rps=0.01, error_ratio=0.9),
            ServiceRed("fine", rate_rps=50.0, error_ratio=0.01),
        )))  # fmt: skip

    found = find(qd, "error_ratio_above", threshold=0.1)

    assert list(found) == ["orders"]
    assert found["orders"]["sources"] == ["prometheus"]
    assert set(find(qd, "error_ratio_above", threshold=0.005)) == {"orders", "fine"}


def test_error_ratio_from_spans_sums_the_last_five_minutes(qd):
    now = qd.clock().replace(second=0, microsecond=0)
    with qd.store.session(write=True) as db:
        for minute in range(1, 4):
            db.add(SpanRedMinute(minute_at=now - timedelta(minutes=minute), source="payments",
                                 target="", count=100, errors=30))  # fmt: skip
            db.add(SpanRedMinute(minute_at=now - timedelta(minutes=minute), source="orders",
                                 target="", count=100, errors=1))  # fmt: skip
        db.add(SpanRedMinute(minute_at=now - timedelta(minutes=30), source="orders", target="",
                             count=1000, errors=1000))  # fmt: skip

    found = find(qd, "error_ratio_above", threshold=0.1, source="spans")

    assert list(found) == ["payments"]
    assert found["payments"]["error_ratio"] == 0.3  # 90 of 300, by hand


def test_the_replay_fires_each_long_enough_stretch_once_and_applies_the_rate_limit(fleet):
    def at(minutes_before: int, status: str) -> None:
        moment = T0 - timedelta(minutes=minutes_before)
        fleet.qd.clock = lambda: moment
        fleet.consul.register_check("node-1", "service:web-1", "http", status=status,
                                    service_id="web-1")  # fmt: skip
        fleet.collect()

    at(180, "critical")  # 10 minutes critical: fires at -175
    at(170, "passing")
    at(160, "critical")  # 20 minutes: fires at -155, within the hour of the first run
    at(140, "passing")
    at(60, "critical")  # 2 minutes: too short for for_s = 300
    at(58, "passing")
    fleet.qd.clock = lambda: T0
    fleet.qd.config = fleet.qd.config.replace(
        runbook_book=parse_runbooks(BOOK, "rb.yaml"),
        rules=(
            RuleConfig(
                name="r",
                when="instance_critical_with_traffic",
                runbook="evacuate",
                mode="auto",
                for_s=300,
                max_per_hour=1,
            ),
        ),  # fmt: skip
    )

    replay = replay_rules(fleet.qd, 24)

    assert [(d["at"], d["would"], d["limit"]) for d in replay["decisions"]] == [
        ("2026-12-02T09:05:00Z", "run", None),
        ("2026-12-02T09:25:00Z", "refuse", "rate_limit"),
    ]
    assert {d["target"] for d in replay["decisions"]} == {"web/web-1"}
    assert replay["not_replayed"] == ["stale_source", "last_healthy_instance"]
    assert replay_rules(fleet.qd, 2)["decisions"] == []  # the window starts after them


def test_slo_burn_names_a_fast_burn_with_the_probes_it_must_keep_fresh_and_no_slow_one(qd):
    probe = ProbeConfig(name="checkout", service="orders", url="http://127.0.0.1:9/", interval_s=30)
    slo = SloConfig(service="orders", objective=99.0, sli="probes")
    qd.config = qd.config.replace(probes=(probe,), slo=(slo,))
    now = qd.clock()

    def runs(minutes: int, failed_every: int) -> None:
        """One run a minute over the last `minutes`; every `failed_every`-th one failed."""
        with qd.store.session(write=True) as db:
            for k in range(minutes):
                db.add(ProbeResultRow(name="checkout", service="orders",
                                      at=now - timedelta(minutes=k, seconds=30),
                                      ok=k % failed_every != 0, status=200, latency_ms=50.0,
                                      detail=""))  # fmt: skip

    runs(60, failed_every=20)  # 3 of 60 failed: burn 5 over 1 h and 6 h, below 14.4 and 6
    assert find(qd, "slo_burn") == {}
    assert list(find(qd, "slo_burn", severity="slow")) == ["orders"]  # 5 > 3 over 1 d and 2 h

    runs(10, failed_every=1)  # 10 more, all failed: 13 of 70 over the hour, 6 of 10 over 5 min
    with qd.store.session(write=True) as db:  # and the probe runner stopped a second ago
        db.add(ProbeState(name="checkout", service="orders", state="failing", since_at=now,
                          last_at=now, last_ok=False, last_status=None, last_latency_ms=0.0,
                          fresh_until_at=now - timedelta(seconds=1)))  # fmt: skip
    found = find(qd, "slo_burn")

    evidence = found["orders"]
    assert (evidence["state"], evidence["sli"], evidence["sources"]) == ("fast", "probes", [])
    assert [a["long"] for a in evidence["alerts"]] == ["1h", "6h", "1d", "3d"]
    assert evidence["alerts"][0]["burn_long"] == pytest.approx(13 / 70 / 0.01)
    assert evidence["alerts"][0]["burn_short"] == pytest.approx(60)
    assert evidence["stale"] == ["probe checkout"]


def test_slo_burn_takes_only_a_severity_of_fast_or_slow():
    check = RULE_CONDITIONS["slo_burn"].check_params

    assert check({}) is None and check({"severity": "slow"}) is None
    assert check({"severity": "page"}) == "severity must be fast or slow"
    assert check({"threshold": 0.1}).startswith("unknown parameter 'threshold'")


def test_the_replay_names_a_slo_burn_rule_as_not_replayed(qd):
    qd.config = qd.config.replace(
        runbook_book=parse_runbooks(SHED_BOOK, "rb.yaml"),
        slo=(SloConfig(service="web", sli="checks"),),
        rules=(RuleConfig(name="burning", when="slo_burn", runbook="shed-load"),),
    )

    replay = replay_rules(qd, 24)

    assert replay["decisions"] == []
    assert replay["notes"] == [f"burning: {RULE_CONDITIONS['slo_burn'].history_note}"]
    assert "not replayed" in replay["notes"][0]
