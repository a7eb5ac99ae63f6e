"""A change the store could not take is not lost: the collector starts over with a full pass."""

from __future__ import annotations

from sqlalchemy import text

from app.collection.runner import run_pass


def rename_table(qd, old: str, new: str) -> None:
    with qd.store.session(write=True) as db:
        db.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_a_failed_write_makes_the_next_pass_a_full_one(
    double, fleet, make_consul_qd, make_collector, make_api
):
    qd = make_consul_qd(wait_s=2)
    collector = make_collector(qd)
    api = make_api(qd)
    assert run_pass(qd, collector).ok
    payments = next(i for i in fleet if i.service == "payments")

    # The store refuses writes to the transitions table while the change comes in.
    rename_table(qd, "health_transitions", "health_transitions_away")
    double.set_check(f"service:{payments.service_id}", "critical", "HTTP 500", payments.node)
    failed = run_pass(qd, collector)
    assert not failed.ok and "could not store" in failed.error
    assert api.services()["payments"]["health"] == "passing"  # nothing half-written

    rename_table(qd, "health_transitions_away", "health_transitions")
    recovered = run_pass(qd, collector)
    assert recovered.ok
    assert recovered.counts["services"] >= 5  # a full pass, not just the changed service
    assert api.services()["payments"]["health"] == "critical"
    assert api.source()["status"] == "ok"
