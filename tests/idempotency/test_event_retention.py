"""Stored idempotency events are pruned by their own ts_ms after [retention] idempotency_d."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.config import RetentionConfig
from app.models import IdemEventRow
from app.queries.idempotency import datetime_to_ms
from app.store.retention import prune
from tests.idempotency.conftest import drain, emit


def test_events_older_than_the_retention_go_and_newer_ones_stay(
    idem_qd, make_collector, redis_client
):
    now = idem_qd.clock()
    emit(redis_client, 2, ts_ms=str(datetime_to_ms(now - timedelta(days=31))))
    emit(redis_client, 3, start=10, ts_ms=str(datetime_to_ms(now - timedelta(days=29))))
    drain(idem_qd, make_collector())
    with idem_qd.store.session() as db:
        removed = prune(db, RetentionConfig(idempotency_d=30), now)
    assert removed["idem_events"] == 2
    with idem_qd.store.session() as db:
        keys = sorted(db.scalars(select(IdemEventRow.key)))
    assert keys == ["k10", "k11", "k12"]
    with idem_qd.store.session() as db:
        assert "idem_events" not in prune(db, RetentionConfig(idempotency_d=0), now)
