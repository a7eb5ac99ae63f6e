"""The collector reads the stream through a consumer group and loses or repeats nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from app.collection.runner import run_pass
from app.models import IdemEventRow
from app.store.idempotency import write_idem_events
from tests.idempotency.conftest import STREAM, drain, emit

REPO = Path(__file__).resolve().parents[2]


def stored(qd) -> tuple[int, int]:
    """Return (rows, distinct entry ids) in the store."""
    with qd.store.session() as db:
        rows = db.scalar(select(func.count()).select_from(IdemEventRow))
        distinct = db.scalar(select(func.count(IdemEventRow.entry_id.distinct())))
    return rows, distinct


def pending(client) -> int:
    return int(client.xpending(STREAM, "quarterdeck")["pending"])


def test_the_group_is_created_with_the_stream_and_reads_entries_written_before_it(
    idem_qd, make_collector, redis_client
):
    emit(redis_client, 5)
    drain(idem_qd, make_collector())
    assert stored(idem_qd) == (5, 5)
    assert pending(redis_client) == 0
    groups = redis_client.xinfo_groups(STREAM)
    assert [g["name"] for g in groups] == [b"quarterdeck"]


def test_an_empty_redis_gets_the_stream_and_group_and_a_second_collector_finds_them(
    idem_qd, make_collector, redis_client
):
    drain(idem_qd, make_collector())
    assert redis_client.exists(STREAM)
    drain(idem_qd, make_collector())  # BUSYGROUP: the group exists, which is fine
    emit(redis_client, 3)
    drain(idem_qd, make_collector())
    assert stored(idem_qd) == (3, 3)


def test_a_pass_whose_rows_were_committed_but_not_acknowledged_duplicates_nothing(
    idem_qd, make_collector, redis_client
):
    emit(redis_client, 10_000)
    crashed = make_collector(consumer="qd-a", batch=2000, max_per_pass=4000)
    # What run_pass does up to the commit, then the process dies before XACK.
    records = crashed.collect()
    with idem_qd.store.session(write=True) as db:
        write_idem_events(db, "redis", records[0])
    assert stored(idem_qd) == (4000, 4000)
    assert pending(redis_client) == 4000

    restarted = make_collector(consumer="qd-a", batch=2000, max_per_pass=4000)
    drain(idem_qd, restarted)
    assert stored(idem_qd) == (redis_client.xlen(STREAM), 10_000)
    assert pending(redis_client) == 0


def test_a_pass_read_but_never_stored_is_read_again_after_restart(
    idem_qd, make_collector, redis_client
):
    emit(redis_client, 10_000)
    crashed = make_collector(consumer="qd-a", max_per_pass=3000)
    crashed.collect()  # read, then the process dies before anything is written
    assert stored(idem_qd) == (0, 0)

    drain(idem_qd, make_collector(consumer="qd-a", max_per_pass=3000))
    assert stored(idem_qd) == (10_000, 10_000) == (redis_client.xlen(STREAM), 10_000)


def test_the_collector_killed_mid_pass_then_restarted_stores_10000_events_once_each(
    idem_qd, make_collector, redis_client, redis_url
):
    emit(redis_client, 10_000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("collector_process.py")),
            idem_qd.config.store.url,
            redis_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert worker.stdout.readline().startswith("pass 1")
        assert worker.stdout.readline().startswith("pass 2")
        worker.send_signal(signal.SIGKILL)  # wherever it is: reading, writing or acknowledging
    finally:
        worker.kill()
        worker.wait(timeout=30)
        worker.stdout.close()
    rows_at_kill, _ = stored(idem_qd)
    assert 0 < rows_at_kill < 10_000

    drain(idem_qd, make_collector(consumer="collector-under-test"))
    assert stored(idem_qd) == (redis_client.xlen(STREAM), 10_000)
    assert pending(redis_client) == 0


def test_a_dead_consumers_pending_entries_are_claimed_after_the_idle_time(
    idem_qd, make_collector, redis_client
):
    make_collector().collect()  # creates the group
    emit(redis_client, 50)
    # Another replica read them and died without acknowledging.
    redis_client.xreadgroup("quarterdeck", "dead-replica", {STREAM: ">"}, count=50)
    assert pending(redis_client) == 50

    patient = make_collector(consumer="live", claim_idle_ms=3_600_000)
    drain(idem_qd, patient)
    assert stored(idem_qd) == (0, 0)  # not idle long enough: still the dead one's

    eager = make_collector(consumer="live", claim_idle_ms=0)
    drain(idem_qd, eager)
    assert stored(idem_qd) == (50, 50)
    assert pending(redis_client) == 0
    consumers = {
        c["name"]: c["pending"] for c in redis_client.xinfo_consumers(STREAM, "quarterdeck")
    }
    assert consumers[b"dead-replica"] == 0


def test_a_failed_write_acknowledges_nothing_and_the_next_pass_stores_it(
    idem_qd, make_collector, redis_client
):
    emit(redis_client, 20)
    collector = make_collector()
    # The store refuses the write for real: the table the writer needs is gone for a while.
    idem_qd.store.dispose()
    with idem_qd.store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE idem_events RENAME TO idem_events_away")
    result = run_pass(idem_qd, collector)
    assert not result.ok and "could not store" in result.error
    assert pending(redis_client) == 20
    with idem_qd.store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE idem_events_away RENAME TO idem_events")
    drain(idem_qd, collector)
    assert stored(idem_qd) == (20, 20)
    assert pending(redis_client) == 0
