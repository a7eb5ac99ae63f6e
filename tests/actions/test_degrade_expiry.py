"""The scheduled job that restores a service whose degrade switch's `until` has passed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from app.actions.expiry import EXPIRY_ACTOR, JOB_ID, expire_degrade_switches
from app.collection.jobs import declared_jobs
from app.store.audit import list_entries

KEY = "quarterdeck/degrade/web"


def switch(until: datetime, **fields) -> str:
    value = {"level": "partial", "features_off": ["x"], "reason": "r", "by": "alice"}
    value["until"] = until.isoformat().replace("+00:00", "Z")
    return json.dumps({**value, **fields})


def test_the_expiry_job_is_declared_when_consul_is_configured(fleet, make_qd):
    assert JOB_ID in [job.id for job in declared_jobs(fleet.qd)]
    assert JOB_ID not in [job.id for job in declared_jobs(make_qd())]


def test_an_expired_switch_is_deleted_and_audited_as_an_automatic_restore(fleet):
    past = datetime.now(UTC) - timedelta(minutes=1)
    fleet.consul.kv_put(KEY, switch(past))
    fleet.consul.kv_put("quarterdeck/degrade/other", switch(past + timedelta(hours=2)))

    results = expire_degrade_switches(fleet.qd)

    assert [r["status"] for r in results] == ["done"]
    assert fleet.kv(KEY) is None
    assert fleet.kv("quarterdeck/degrade/other") is not None
    with fleet.qd.store.session() as db:
        (entry,), _ = list_entries(db, action="restore")
        assert entry.actor == EXPIRY_ACTOR
        assert entry.target == "web"
        assert "automatic restore" in entry.reason
        assert entry.steps[0]["before"]["value"]["by"] == "alice"


def test_a_second_pass_finds_nothing_left_to_expire(fleet):
    fleet.consul.kv_put(KEY, switch(datetime.now(UTC) - timedelta(seconds=5)))
    expire_degrade_switches(fleet.qd)

    assert expire_degrade_switches(fleet.qd) == []


def test_a_degrade_written_after_the_job_read_the_key_is_left_alone(fleet):
    # The job's restore expects the expired value: a new switch is someone else's, never deleted.
    fleet.consul.kv_put(KEY, switch(datetime.now(UTC) - timedelta(seconds=5)))
    fleet.consul.inject_fault(f"/v1/kv/{KEY}", "cas_conflict", count=1)

    (result,) = expire_degrade_switches(fleet.qd)

    assert result["status"] == "failed"
    assert "CAS conflict" in result["steps"][0]["detail"]
    assert fleet.kv(KEY) == {"by": "another writer"}
