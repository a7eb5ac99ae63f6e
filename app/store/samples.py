"""Append numeric samples in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.models import Sample
from app.store.bulk import insert_columns

_FIELDS = ("source", "metric", "service", "instance", "value", "at")


@dataclass(frozen=True)
class SampleRow:
    """One value of a metric for a service instance at a time."""

    source: str
    metric: str
    service: str
    instance: str
    value: float
    at: datetime


def insert_samples(session: Session, rows: Sequence[SampleRow]) -> int:
    """Insert samples with one executemany; flush, don't commit."""
    insert_columns(
        session.connection(),
        Sample.__table__,
        {name: [getattr(r, name) for r in rows] for name in _FIELDS},
    )
    return len(rows)
