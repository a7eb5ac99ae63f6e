"""What a store writer returns to the runner, in its own module so writers need not import it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Written:
    """What a store writer did with one record: counts for the run, live topics to wake."""

    counts: dict[str, int]
    topics: frozenset[str] = frozenset()
