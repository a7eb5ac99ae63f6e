"""Entries from other emitters with missing or odd fields are kept, counted, never blocking."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import IdemEventRow
from app.queries.idempotency import ConflictFilters, read_counts
from collectors.redis_idem import _parse_odd_entry, parse_entry
from tests.idempotency.conftest import STREAM, drain, emit


def rows_by_entry(qd) -> dict[str, IdemEventRow]:
    with qd.store.session() as db:
        rows = db.scalars(select(IdemEventRow)).all()
        db.expunge_all()
    return {row.entry_id: row for row in rows}


def test_odd_entries_are_stored_with_what_they_have_and_counted_as_malformed(
    idem_qd, make_collector, redis_client
):
    before = emit(redis_client, 3)
    odd = {
        "no kind": redis_client.xadd(STREAM, {"service": "billing", "key": "b1", "ts_ms": "1"}),
        "unknown kind": redis_client.xadd(
            STREAM,
            {"service": "billing", "instance": "b-1", "key": "b2", "kind": "dupe", "ts_ms": "2"},
        ),
        "ts text": redis_client.xadd(
            STREAM,
            {
                "service": "go-svc",
                "instance": "g",
                "key": "g1",
                "kind": "lock_expired",
                "ts_ms": "soon",
            },
        ),
        "bytes": redis_client.xadd(STREAM, {b"service": b"\xff\xfe", b"weird": b"\x00"}),
        "bad trace": redis_client.xadd(
            STREAM,
            {
                "service": "s",
                "instance": "i",
                "key": "k",
                "kind": "renew_failed",
                "ts_ms": "5",
                "trace_id": "<script>",
                "held_ms": "-3",
            },
        ),  # fmt: skip
    }
    after = emit(redis_client, 3, start=100)
    drain(idem_qd, make_collector(batch=2))  # small batches: odd ones sit between reads

    rows = rows_by_entry(idem_qd)
    assert len(rows) == 11
    assert all(not rows[i].malformed for i in before + after)
    odd_rows = {name: rows[entry.decode()] for name, entry in odd.items()}
    assert all(row.malformed for row in odd_rows.values())
    assert (
        odd_rows["no kind"].service == "billing" and "kind missing" in odd_rows["no kind"].problems
    )
    assert odd_rows["unknown kind"].kind == "dupe"
    assert "ts_ms is not whole milliseconds" in odd_rows["ts text"].problems
    # Without a usable ts_ms the entry id's own time stands in.
    assert odd_rows["ts text"].at_ms == int(odd["ts text"].decode().split("-")[0])
    assert "\ufffd" in odd_rows["bytes"].service and "not UTF-8" in odd_rows["bytes"].problems
    assert odd_rows["bad trace"].trace_id == "" and odd_rows["bad trace"].held_ms is None
    assert int(redis_client.xpending(STREAM, "quarterdeck")["pending"]) == 0

    with idem_qd.store.session() as db:
        counts = read_counts(db, ConflictFilters())
    assert counts["malformed"] == 5
    assert counts["duplicate_inflight"] == 6
    assert counts["lock_expired"] == 0  # the odd lock_expired counts as malformed only


def test_an_entry_deleted_while_pending_is_acknowledged_and_skipped(
    idem_qd, make_collector, redis_client
):
    collector = make_collector()
    ids = emit(redis_client, 3)
    collector.collect()  # read, never stored: all three stay pending
    redis_client.xdel(STREAM, ids[1])
    drain(idem_qd, collector)
    assert set(rows_by_entry(idem_qd)) == {ids[0], ids[2]}
    assert int(redis_client.xpending(STREAM, "quarterdeck")["pending"]) == 0


GOOD = {"service": "orders", "instance": "orders-1", "key": "k1", "kind": "lock_expired",
        "ts_ms": "1796190423150", "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "fingerprint": "sha256:ab", "held_ms": "2600", "ttl_ms": "2000"}  # fmt: skip
EDGES = [
    {},
    {"held_ms": ""},
    {"ttl_ms": "-5"},
    {"held_ms": "1" * 13},
    {"ts_ms": "1" * 17},
    {"ts_ms": "١٢٣"},  # Arabic-Indic digits: isdigit() but not ASCII
    {"trace_id": "0AF7651916CD43DD8448EB211C80319C"},
    {"trace_id": "0af7651916cd43dd8448eb211c80319"},
    {"kind": "dupe"},
    {"kind": ""},
    {"service": ""},
    {"key": "k" * 513},
    {"fingerprint": "f" * 129},
    {"instance": "orders-\ufffd"},
    {"trace_id": None, "fingerprint": None, "held_ms": None, "ttl_ms": None},
]


@pytest.mark.parametrize("change", EDGES, ids=[str(sorted(e)) or "good" for e in EDGES])
def test_the_fast_path_reads_an_entry_exactly_as_the_field_by_field_checks_do(change):
    fields = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    assert parse_entry("1796190423150-0", fields) == _parse_odd_entry("1796190423150-0", fields)
