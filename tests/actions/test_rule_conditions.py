"""Each rule condition on real data: a failing probe, RED figures, span minutes; the replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.collection.probes import run_and_record
from app.config import ProbeConfig, RuleConfig
from app.models import SpanRedMinute
from app.rules.conditions import RULE_CONDITIONS
from app.rules.replay import replay_rules
from app.runbooks.book import parse_runbooks
from app.store.metrics import write_red
from collectors.metrics import RedUpdate, ServiceRed
from tests.actions.test_rules import BOOK

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
