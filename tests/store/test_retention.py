"""Retention removes only what is older than configured, and 0 keeps forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.config import RetentionConfig
from app.models import CollectorRun, Sample
from app.store import Store
from app.store.retention import prune
from app.store.samples import SampleRow, insert_samples

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_old_samples_and_runs_go_and_recent_ones_stay(store_url):
    store = Store(store_url)
    try:
        with store.session() as db:
            insert_samples(
                db,
                [
                    SampleRow("haproxy", "scur", "push", "p1", 1.0, NOW - timedelta(days=20)),
                    SampleRow("haproxy", "scur", "push", "p1", 2.0, NOW - timedelta(days=1)),
                ],
            )
            for age in (30, 1):
                db.add(
                    CollectorRun(
                        source="consul",
                        kind="consul",
                        started_at=NOW - timedelta(days=age),
                        duration_s=0.1,
                        ok=True,
                    )
                )
        with store.session() as db:
            removed = prune(db, RetentionConfig(samples_d=14), NOW)
        assert removed["samples"] == 1 and removed["collector_runs"] == 1
        with store.session() as db:
            assert db.scalar(select(func.count()).select_from(Sample)) == 1
            assert db.scalar(select(func.count()).select_from(CollectorRun)) == 1
        with store.session() as db:
            assert "samples" not in prune(
                db, RetentionConfig(samples_d=0), NOW + timedelta(days=99)
            )
            assert db.scalar(select(func.count()).select_from(Sample)) == 1
    finally:
        store.dispose()
