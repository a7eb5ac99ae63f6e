"""Retention removes only what is older than configured, and 0 keeps forever; audit entries
that a change still in force or another row needs are kept whatever their age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.config import RetentionConfig
from app.models import AuditEntry, CollectorRun, RuleProposal, Sample
from app.store import Store
from app.store.audit import add_entry
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


def _step(source: str, target: dict, change: dict, changed: bool = True) -> dict:
    """A `steps[]` entry as an action records it."""
    return {"source": source, "kind": source, "target": target, "change": "", "set": change,
            "before": {}, "ok": True, "detail": "", "changed": changed,
            "after": change}  # fmt: skip


def _entry(db, entry_id: str, days: float, action: str, *steps: dict, status: str = "done",
           undo_of: str | None = None, target: str = "web") -> None:  # fmt: skip
    at = NOW - timedelta(days=days)
    add_entry(db, id=entry_id, at=at, finished_at=at, actor="alice", action=action,
              target=target, reason="", params={}, plan=[], steps=list(steps), blast_radius={},
              status=status, undo_of=undo_of, idempotency_key=None)  # fmt: skip


S1 = {"backend": "web", "server": "s1"}
S2 = {"backend": "web", "server": "s2"}
S3 = {"backend": "web", "server": "s3"}
WEB = {"key": "quarterdeck/degrade/web"}
ORDERS = {"key": "quarterdeck/degrade/orders"}


def test_old_audit_entries_go_unless_a_change_is_in_force_or_a_row_needs_them(store_url):
    store = Store(store_url)
    try:
        with store.session() as db:
            _entry(db, "old-decision", 60, "rule", status="proposed")  # goes
            _entry(db, "recent-decision", 1, "rule", status="proposed")  # young: stays
            # Drained 60 days ago and nothing changed s1 since: its undo is still offered.
            _entry(db, "drain-s1", 60, "drain", _step("edge", S1, {"state": "drain"}))
            # s2 drained, then made ready by a later action: the drain is no longer in force.
            _entry(db, "drain-s2", 60, "drain", _step("edge", S2, {"state": "drain"}))  # goes
            _entry(db, "ready-s2", 50, "ready", _step("edge", S2, {"state": "ready"}))
            # A degrade undone, the undo still in force: the undo names it, both stay.
            _entry(db, "degrade-web", 60, "degrade", _step("consul", WEB, {"value": {"on": 1}}))
            _entry(db, "undo-web", 59, "undo degrade", _step("consul", WEB, {"value": None}),
                   undo_of="degrade-web")  # fmt: skip
            # A degrade undone, then degraded again later: the first two go.
            _entry(db, "degrade-orders", 60, "degrade",
                   _step("consul", ORDERS, {"value": {"on": 1}}))  # fmt: skip  # goes
            _entry(db, "undo-orders", 59, "undo degrade", _step("consul", ORDERS, {"value": None}),
                   undo_of="degrade-orders")  # fmt: skip  # goes
            _entry(db, "degrade-orders-again", 40, "degrade",
                   _step("consul", ORDERS, {"value": {"on": 2}}))  # fmt: skip
            # Waiting for a second operator since long ago.
            _entry(db, "waiting", 60, "degrade", status="awaiting_approval")
            # Changed nothing, but an approved proposal names it as its run.
            _entry(db, "proposal-run", 60, "runbook", _step("edge", S1, {"state": "x"}, False),
                   status="failed")  # fmt: skip
            db.add(RuleProposal(id="p1", rule="r", target="web", runbook="rb", at=NOW,
                                state="ran", audit_id="proposal-run"))  # fmt: skip
            # A proposal's run, undone, then changed again: the proposal keeps the run, and the
            # run keeps its undo, so it still reads as undone.
            _entry(db, "proposed-drain", 60, "runbook", _step("edge", S3, {"state": "drain"}))
            db.add(RuleProposal(id="p2", rule="r", target="web", runbook="rb", at=NOW,
                                state="ran", audit_id="proposed-drain"))  # fmt: skip
            _entry(db, "undo-proposed", 59, "undo runbook", _step("edge", S3, {"state": "ready"}),
                   undo_of="proposed-drain")  # fmt: skip
            _entry(db, "drain-s3-again", 40, "drain", _step("edge", S3, {"state": "drain"}))
            # Undone yesterday: the undo is young, so what it reversed stays with it.
            _entry(db, "drain-old-undone", 60, "drain",
                   _step("nginx", {"server": "10.0.0.9:80"}, {"down": True}))  # fmt: skip
            _entry(db, "undo-recent", 1, "undo drain",
                   _step("nginx", {"server": "10.0.0.9:80"}, {"down": False}),
                   undo_of="drain-old-undone")  # fmt: skip

        with store.session() as db:
            removed = prune(db, RetentionConfig(audit_d=30), NOW)

        assert removed["audit_entries"] == 4
        with store.session() as db:
            left = set(db.scalars(select(AuditEntry.id)))
            assert left == {
                "recent-decision", "drain-s1", "ready-s2", "degrade-web", "undo-web",
                "degrade-orders-again", "waiting", "proposal-run", "drain-old-undone",
                "undo-recent", "proposed-drain", "undo-proposed", "drain-s3-again",
            }  # fmt: skip
            assert db.get(RuleProposal, "p1").audit_id == "proposal-run"  # nothing else went
        with store.session() as db:
            assert "audit_entries" not in prune(db, RetentionConfig(audit_d=0), NOW)
            assert prune(db, RetentionConfig(audit_d=30), NOW)["audit_entries"] == 0
    finally:
        store.dispose()
