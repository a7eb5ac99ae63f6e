"""The `release_worse` rule condition: a recent release worse than the one before proposes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.models import IdemEventRow, Release
from app.rules.conditions import RULE_CONDITIONS
from demo.run import demo_config, write_demo_config
from tests.releases.test_releases_from_consul import span_minutes

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def releases(qd, current_at: datetime, previous_at: datetime) -> None:
    """orders v1 (previous) and v2 (active), as the releases key names them."""
    with qd.store.session(write=True) as db:
        db.add_all([
            Release(service="orders", version="v1", started_at=previous_at, last_seen_at=NOW,
                    seen_in="kv", kv_role="previous", instances=1),
            Release(service="orders", version="v2", started_at=current_at, last_seen_at=NOW,
                    seen_in="kv", kv_role="active", instances=1),
        ])  # fmt: skip


def find(qd, **params):
    with qd.store.session() as db:
        return RULE_CONDITIONS["release_worse"].find(db, NOW, params, qd.config)


def test_a_recent_release_failing_more_than_the_previous_one_is_found_with_its_figures(qd):
    releases(qd, current_at=NOW - timedelta(minutes=20), previous_at=NOW - timedelta(hours=2))
    span_minutes(qd, NOW - timedelta(minutes=80), 60, count=100, errors=1, bucket=3)
    span_minutes(qd, NOW - timedelta(minutes=20), 20, count=100, errors=30, bucket=3)

    found = find(qd)

    assert list(found) == ["orders"]
    evidence = found["orders"]
    assert (evidence["release"], evidence["previous"]) == ("v2", "v1")
    assert evidence["worse_in"] == ["error ratio"]
    assert evidence["figures"]["error_ratio"]["current"] > 0.25
    assert evidence["figures"]["error_ratio"]["previous"] < 0.02


def test_a_release_as_good_as_the_previous_one_is_not_found(qd):
    releases(qd, current_at=NOW - timedelta(minutes=20), previous_at=NOW - timedelta(hours=2))
    span_minutes(qd, NOW - timedelta(minutes=80), 80, count=100, errors=1, bucket=3)

    assert find(qd) == {}


def test_a_release_older_than_within_h_is_the_baseline_not_a_candidate(qd):
    releases(qd, current_at=NOW - timedelta(hours=30), previous_at=NOW - timedelta(hours=40))
    span_minutes(qd, NOW - timedelta(hours=35), 60, count=100, errors=1, bucket=3)
    span_minutes(qd, NOW - timedelta(minutes=60), 60, count=100, errors=30, bucket=3)

    assert find(qd) == {}
    assert list(find(qd, within_h=48)) == ["orders"]


def test_its_params_are_checked():
    check = RULE_CONDITIONS["release_worse"].check_params
    assert check({"within_h": 6}) is None
    assert "unknown parameter 'threshold'" in check({"threshold": 0.1})
    assert check({"within_h": "soon"}) == "within_h has the wrong type"


def test_the_demo_proposes_rolling_back_a_bad_release_with_a_service_runbook(tmp_path):
    config = demo_config(write_demo_config(tmp_path, "127.0.0.1:0", "http://127.0.0.1:1"))

    rule = next(r for r in config.rules if r.name == "bad-release")
    assert (rule.when, rule.mode, rule.runbook) == ("release_worse", "propose", "roll-back")
    book = config.runbook_book["roll-back"]
    assert book.target == "service"
    assert [step.action for step in book.steps] == ["rollback"]


def compare(qd):
    from app.queries.releases import compare_releases

    with qd.store.session() as db:
        return compare_releases(db, "orders", NOW)


def test_the_minute_a_release_started_in_counts_for_neither_version(qd):
    started = NOW - timedelta(minutes=20, seconds=-30)  # half a minute into a minute
    releases(qd, current_at=started, previous_at=NOW - timedelta(hours=2))
    span_minutes(qd, NOW - timedelta(minutes=80), 59, count=100, errors=1, bucket=3)
    # The boundary minute: the old build's last requests and the new one's first, all failing.
    span_minutes(qd, started.replace(second=0), 1, count=100, errors=100, bucket=3)
    span_minutes(qd, started.replace(second=0) + timedelta(minutes=1), 19, count=100, errors=1,
                 bucket=3)  # fmt: skip

    comparison = compare(qd)

    figures = {f["name"]: f for f in comparison["figures"]}
    assert figures["error_ratio"]["previous"] == figures["error_ratio"]["current"] == 0.01
    assert not comparison["worse"]


def test_conflicts_count_per_hour_of_the_time_events_were_collected(qd):
    # The previous release went out two days ago, but conflicts were collected for 20 minutes:
    # one a minute before and after the new release is the same rate.
    releases(qd, current_at=NOW - timedelta(minutes=10), previous_at=NOW - timedelta(days=2))
    with qd.store.session(write=True) as db:
        for n, minutes_ago in enumerate([*range(11, 21), *range(1, 11)]):
            at_ms = int((NOW - timedelta(minutes=minutes_ago)).timestamp() * 1000)
            db.add(IdemEventRow(stream="s", entry_id=f"1-{n}", at_ms=at_ms, service="orders",
                                key=f"k{n}", kind="duplicate_inflight"))  # fmt: skip

    figures = {f["name"]: f for f in compare(qd)["figures"]}

    assert figures["conflicts_per_h"]["previous"] == figures["conflicts_per_h"]["current"] == 60
    assert not figures["conflicts_per_h"]["worse"]


def test_after_a_rollback_the_older_release_active_again_is_compared_with_nothing(qd):
    # The releases key names 2.4.1 active again and the newer candidate previous.
    releases(qd, current_at=NOW - timedelta(days=2), previous_at=NOW - timedelta(minutes=30))
    span_minutes(qd, NOW - timedelta(minutes=30), 30, count=100, errors=40, bucket=3)

    comparison = compare(qd)

    assert comparison["rolled_back"] is True
    assert not comparison["worse"] and comparison["worse_in"] == []
    assert all(f["current"] is None and f["previous"] is None for f in comparison["figures"])
    assert find(qd) == {}  # and so the rule proposes nothing
