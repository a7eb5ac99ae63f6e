"""The report's sweep over instance spans rolls a service up exactly as the health strips do."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from app.queries.strips import Span, service_spans
from app.reports.availability import sweep_service_spans

STATES = ("passing", "passing", "passing", "warning", "critical", "maintenance", "unknown", "gone")
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def random_instance(rng: random.Random) -> list[Span]:
    """Contiguous spans of random states, starting somewhere in the first hour."""
    at = T0 + timedelta(minutes=rng.randrange(60))
    spans = []
    for _ in range(rng.randrange(1, 8)):
        end = at + timedelta(minutes=rng.randrange(1, 90))
        spans.append(Span(rng.choice(STATES), at, end))
        at = end
    return spans


def test_the_sweep_matches_the_strips_rollup_on_random_fleets():
    rng = random.Random(7)
    for _ in range(300):
        fleet = [random_instance(rng) for _ in range(rng.randrange(1, 6))]
        assert sweep_service_spans(fleet) == service_spans(fleet)
