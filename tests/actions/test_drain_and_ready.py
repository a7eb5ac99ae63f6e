"""Drain and ready an instance end to end, read back from the real HAProxy, nginx and Consul."""

from __future__ import annotations

import pytest

from app.actions.running import ActionRequest, submit_action, undo_action
from app.actions.steps import ActionRefused
from app.store.audit import list_entries
from tests.fixtures.processes import wait_for


def drain(fleet, adapters, instance="web-1", **fields):
    request = ActionRequest("drain", "web", instance, reason="kernel patch", **fields)
    return submit_action(fleet.qd, adapters, "alice", request)


def ready(fleet, adapters, instance="web-1"):
    return submit_action(fleet.qd, adapters, "alice", ActionRequest("ready", "web", instance))


def test_a_dry_run_plans_every_source_with_its_current_value_and_changes_nothing(fleet, adapters):
    plan = drain(fleet, adapters, dry_run=True)

    assert plan["status"] == "planned"
    assert [(s["source"], s["set"], s["before"]) for s in plan["plan"]] == [
        ("edge", {"state": "drain"}, {"state": "ready", "weight": 1}),
        ("push", {"state": "down"}, {"state": "ready", "weight": 1}),
        ("consul", {"maintenance": True, "reason": "kernel patch"}, {"maintenance": False}),
    ]
    assert plan["plan"][0]["change"] == "haproxy edge: set server web/s1 state drain"
    assert plan["blast_radius"]["serving_after"] == ["web-2"]
    assert plan["blast_radius"]["push_connections"] == 0  # HAProxy's scur of web/s1
    assert fleet.haproxy_status("s1") == "UP"
    assert "down" not in fleet.nginx_line("web-1")
    assert not fleet.maintenance("web-1")
    with fleet.qd.store.session() as db:
        assert list_entries(db)[1] == 0


def test_drain_reaches_haproxy_nginx_and_consul_and_traffic_goes_elsewhere(fleet, adapters):
    result = drain(fleet, adapters)

    assert result["status"] == "done", result["steps"]
    assert [s["ok"] for s in result["steps"]] == [True, True, True]
    assert fleet.haproxy_status("s1") == "DRAIN"
    assert fleet.nginx_line("web-1").endswith("down;")
    assert fleet.maintenance("web-1")
    # The reload is asynchronous: new workers take over a moment after the signal.
    wait_for(lambda: fleet.answers_through_nginx() == {"web-2"}, "nginx to send all to web-2", 10)


def test_ready_after_drain_restores_every_source(fleet, adapters):
    drain(fleet, adapters)

    result = ready(fleet, adapters)

    assert result["status"] == "done", result["steps"]
    assert fleet.haproxy_status("s1") == "UP"
    assert "down" not in fleet.nginx_line("web-1")
    assert not fleet.maintenance("web-1")
    wait_for(lambda: fleet.answers_through_nginx(12) == {"web-1", "web-2"}, "nginx to use both", 10)


def test_undo_of_a_drain_is_the_inverse_of_exactly_its_steps(fleet, adapters):
    done = drain(fleet, adapters)

    undo = undo_action(fleet.qd, adapters, "bob", done["id"])

    assert undo["status"] == "done", undo["steps"]
    assert undo["undo_of"] == done["id"]
    assert [(s["source"], s["set"]) for s in undo["steps"]] == [
        ("consul", {"maintenance": False, "reason": "kernel patch"}),
        ("push", {"state": "ready"}),
        ("edge", {"state": "ready"}),
    ]
    assert fleet.haproxy_status("s1") == "UP"
    assert "down" not in fleet.nginx_line("web-1")
    assert not fleet.maintenance("web-1")
    with pytest.raises(ActionRefused) as again:
        undo_action(fleet.qd, adapters, "bob", done["id"])
    assert (again.value.status, again.value.code) == (409, "already_undone")


def test_a_step_already_in_place_is_reported_and_not_undone(fleet, adapters):
    fleet.haproxy.send_runtime("set server web/s1 state drain")

    result = drain(fleet, adapters)
    undo = undo_action(fleet.qd, adapters, "bob", result["id"])

    assert result["steps"][0]["detail"] == "already so: nothing changed"
    assert [s["source"] for s in undo["steps"]] == ["consul", "push"]
    assert fleet.haproxy_status("s1") == "DRAIN"  # it was drained before: the undo leaves it


def test_draining_the_last_healthy_instance_needs_force(fleet, adapters):
    drain(fleet, adapters, "web-2")
    fleet.collect()

    with pytest.raises(ActionRefused) as refused:
        drain(fleet, adapters, "web-1")
    forced = drain(fleet, adapters, "web-1", params={"force": True})

    assert (refused.value.status, refused.value.code) == (409, "last_healthy_instance")
    assert fleet.haproxy_status("s1") == "DRAIN"
    assert forced["status"] == "done"


def test_an_unknown_instance_is_refused_before_anything_runs(fleet, adapters):
    with pytest.raises(ActionRefused) as refused:
        drain(fleet, adapters, "web-9")

    assert (refused.value.status, refused.value.code) == (422, "unknown_target")


def test_every_action_and_undo_is_one_audit_row(fleet, adapters):
    done = drain(fleet, adapters)
    undo_action(fleet.qd, adapters, "bob", done["id"])

    with fleet.qd.store.session() as db:
        rows, total = list_entries(db)

    assert total == 2
    undo_row, drain_row = rows
    assert (drain_row.actor, drain_row.action, drain_row.target) == ("alice", "drain", "web/web-1")
    assert drain_row.reason == "kernel patch" and drain_row.status == "done"
    assert [s["before"] for s in drain_row.steps][0] == {"state": "ready", "weight": 1}
    assert [s["after"] for s in drain_row.steps][0] == {"state": "drain", "weight": 1}
    assert (undo_row.actor, undo_row.undo_of, undo_row.status) == ("bob", drain_row.id, "done")
