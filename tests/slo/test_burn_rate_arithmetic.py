"""Burn rates, the budget left and the multi-window alert state, checked by hand.

Every expected figure is worked out in the test: burn rate = bad ratio / (1 - objective), and an
alert holds only while both its long and its short window burn faster than its factor
(SRE workbook, "Alerting on SLOs": 14.4x over 1 h and 5 m, 6x over 6 h and 30 m pages; 3x over
1 d and 2 h, 1x over 3 d and 6 h opens a ticket).
"""

from __future__ import annotations

import pytest

from app.queries.slo import BURN_ALERTS, judge_objective


def firing(objective) -> list[tuple[str, str]]:
    return [(a["long"], a["short"]) for a in objective.alerts if a["firing"]]


def test_the_workbook_factors_are_the_ones_used():
    assert [(a.severity, a.long, a.short, a.factor) for a in BURN_ALERTS] == [
        ("fast", "1h", "5m", 14.4),  # 2 % of a 30 d budget in 1 h: 0.02 x 720 h / 1 h = 14.4
        ("fast", "6h", "30m", 6.0),  # 5 % in 6 h: 0.05 x 720 / 6 = 6
        ("slow", "1d", "2h", 3.0),  # 10 % in 1 d: 0.10 x 720 / 24 = 3
        ("slow", "3d", "6h", 1.0),  # 10 % in 3 d: 0.10 x 720 / 72 = 1
    ]


def test_a_fast_burn_over_one_hour_and_five_minutes_pages():
    # Objective 99.9 %: the budget is 1 - 0.999 = 0.001 of events.
    ratios = {
        "5m": 0.02,  # 0.02 / 0.001 = 20
        "30m": 0.01,  # 10
        "1h": 0.015,  # 15
        "2h": 0.005,  # 5
        "6h": 0.004,  # 4
        "1d": 0.002,  # 2
        "3d": 0.0012,  # 1.2
        "28d": 0.0005,  # 0.5: half the budget spent over the window
    }
    found = judge_objective("availability", 99.9, "28d", ratios)
    assert found.burn_rate == pytest.approx(
        {"5m": 20, "30m": 10, "1h": 15, "2h": 5, "6h": 4, "1d": 2, "3d": 1.2, "28d": 0.5}
    )
    # 1h 15 > 14.4 and 5m 20 > 14.4: fast. 6h 4 < 6: no. 1d 2 < 3: no. 3d 1.2 > 1, 6h 4 > 1: slow.
    assert firing(found) == [("1h", "5m"), ("3d", "6h")]
    assert found.alert == "fast"
    assert found.error_budget_left == pytest.approx(0.5)  # 1 - 0.5
    assert found.budget_spent == pytest.approx(0.5)


def test_a_slow_burn_opens_a_ticket_but_does_not_page():
    # Objective 99 %: the budget is 0.01.
    ratios = {
        "5m": 0.02,  # 2
        "30m": 0.03,  # 3
        "1h": 0.1,  # 10: below 14.4, no fast page
        "2h": 0.04,  # 4
        "6h": 0.05,  # 5: below 6, no page from 6h/30m either
        "1d": 0.035,  # 3.5 > 3, and 2h 4 > 3: slow
        "3d": 0.008,  # 0.8 < 1: not this one
        "28d": 0.002,  # 0.2
    }
    found = judge_objective("availability", 99.0, "28d", ratios)
    assert firing(found) == [("1d", "2h")]
    assert found.alert == "slow"
    assert found.error_budget_left == pytest.approx(0.8)  # 1 - 0.002 / 0.01


def test_the_short_window_ends_the_alert_once_the_burning_stops():
    # 1h still burns at 0.05 / 0.001 = 50, but the last 5 minutes were clean (0): no page.
    ratios = dict.fromkeys(("30m", "2h", "6h", "1d", "3d", "28d"), 0.0)
    ratios.update({"1h": 0.05, "5m": 0.0})
    found = judge_objective("availability", 99.9, "28d", ratios)
    assert found.burn_rate["1h"] == pytest.approx(50)
    assert firing(found) == []
    assert found.alert == "ok"


def test_an_overspent_budget_is_zero_left_and_spent_above_one():
    # 0.003 / 0.001 = 3 times the budget over the window.
    ratios = {"5m": 0.0, "30m": 0.0, "1h": 0.0, "2h": 0.0, "6h": 0.0, "1d": 0.0, "3d": 0.0}
    found = judge_objective("availability", 99.9, "28d", {**ratios, "28d": 0.003})
    assert found.error_budget_left == 0.0
    assert found.budget_spent == pytest.approx(3.0)


def test_windows_without_events_are_no_data_and_never_fire():
    ratios = dict.fromkeys(("5m", "30m", "1h", "2h", "6h", "1d", "3d", "28d"))
    found = judge_objective("availability", 99.9, "28d", ratios)
    assert found.alert == "no_data"
    assert found.error_budget_left is None
    # A long window burning with no short-window events cannot establish the alert.
    found = judge_objective("availability", 99.9, "28d", {**ratios, "1h": 0.5})
    assert found.alert == "ok"
