"""Degrade and restore a service: the switch in Consul KV with CAS, read back, undone exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from app.actions.running import ActionRequest, parse_action_request, submit_action, undo_action
from app.actions.steps import ActionRefused

KEY = "quarterdeck/degrade/web"


def degrade(fleet, adapters, actor="alice", **params):
    body = {
        "action": "degrade",
        "target": {"service": "web"},
        "params": {"features_off": ["reservations"], "level": "partial", **params},
        "reason": "inventory is slow",
    }
    req = parse_action_request(body, fleet.qd.clock())
    return submit_action(fleet.qd, adapters, actor, req)


def test_the_plan_shows_the_switch_it_writes_and_the_value_consul_holds_now(fleet, adapters):
    fleet.consul.kv_put(KEY, json.dumps({"level": "old"}))
    body = {"action": "degrade", "target": {"service": "web"}, "dry_run": True}

    plan = submit_action(fleet.qd, adapters, "alice", parse_action_request(body))

    assert plan["status"] == "planned"
    (step,) = plan["plan"]
    assert step["source"] == "consul"
    assert step["target"] == {"key": KEY}
    assert step["before"]["value"] == {"level": "old"}
    assert step["before"]["index"] > 0
    assert f"PUT {fleet.consul.url}/v1/kv/{KEY}?cas=" in step["change"]
    assert step["set"]["value"]["by"] == "alice"
    assert fleet.kv(KEY) == {"level": "old"}


def test_degrade_writes_the_switch_and_reads_it_back(fleet, adapters):
    result = degrade(fleet, adapters, duration_s=600)

    assert result["status"] == "done", result["steps"]
    assert result["target"] == "web"
    value = fleet.kv(KEY)
    assert value["level"] == "partial"
    assert value["features_off"] == ["reservations"]
    assert value["reason"] == "inventory is slow"
    assert value["by"] == "alice"
    until = datetime.fromisoformat(value["until"].replace("Z", "+00:00"))
    assert timedelta(seconds=590) < until - datetime.now(UTC) <= timedelta(seconds=600)
    assert result["steps"][0]["after"]["value"] == value
    assert result["steps"][0]["before"] == {"value": None, "index": 0}


def test_undo_of_a_degrade_deletes_a_switch_that_was_absent(fleet, adapters):
    result = degrade(fleet, adapters)

    undo = undo_action(fleet.qd, adapters, "bob", result["id"])

    assert undo["status"] == "done", undo["steps"]
    assert "DELETE" in undo["steps"][0]["change"]
    assert fleet.kv(KEY) is None


def test_undo_of_a_degrade_restores_exactly_the_previous_value(fleet, adapters):
    previous = {"level": "light", "features_off": ["live-stock"], "by": "carol"}
    fleet.consul.kv_put(KEY, json.dumps(previous))
    result = degrade(fleet, adapters)
    assert fleet.kv(KEY)["level"] == "partial"

    undo_action(fleet.qd, adapters, "bob", result["id"])

    assert fleet.kv(KEY) == previous


def test_restore_deletes_the_switch_and_its_undo_puts_it_back(fleet, adapters):
    degraded = degrade(fleet, adapters)
    value = fleet.kv(KEY)
    req = parse_action_request({"action": "restore", "target": {"service": "web"}})

    restored = submit_action(fleet.qd, adapters, "bob", req)

    assert restored["status"] == "done", restored["steps"]
    assert fleet.kv(KEY) is None
    undo_action(fleet.qd, adapters, "carol", restored["id"])
    assert fleet.kv(KEY) == value
    assert degraded["id"] != restored["id"]


def test_a_degrade_with_a_weight_sets_it_on_haproxy_and_the_undo_puts_it_back(fleet, adapters):
    result = degrade(fleet, adapters, weight=0)

    assert [s["source"] for s in result["steps"]] == ["edge", "edge", "consul"]
    assert fleet.haproxy_stat("s1")["weight"] == "0"
    assert fleet.haproxy_stat("s2")["weight"] == "0"
    undo_action(fleet.qd, adapters, "bob", result["id"])
    assert fleet.haproxy_stat("s1")["weight"] == "1"
    assert fleet.kv(KEY) is None


def test_a_cas_conflict_writes_nothing_and_says_so(fleet, adapters):
    fleet.consul.kv_put(KEY, json.dumps({"level": "theirs"}))
    fleet.consul.inject_fault(f"/v1/kv/{KEY}", "cas_conflict", count=1)

    result = degrade(fleet, adapters)

    assert result["status"] == "failed"
    step = result["steps"][0]
    assert step["ok"] is False
    assert "CAS conflict" in step["detail"]
    assert step["changed"] is False
    assert fleet.kv(KEY) == {"by": "another writer"}
    assert "undo_url" not in result


def test_consul_500_after_the_weight_step_is_partial_and_the_undo_restores_the_weight(
    fleet, adapters
):
    # The plan reads the key (GET) before the write; the fault hits the step's PUT.
    fleet.consul.inject_fault(f"/v1/kv/{KEY}", "http_500", count=3)

    result = degrade(fleet, adapters, weight=5)

    assert result["status"] == "partial"
    assert [(s["source"], s["ok"]) for s in result["steps"]] == [
        ("edge", True),
        ("edge", True),
        ("consul", False),
    ]
    assert "No cluster leader" in result["steps"][2]["detail"]
    assert fleet.kv(KEY) is None
    assert fleet.haproxy_stat("s1")["weight"] == "5"
    undo = undo_action(fleet.qd, adapters, "bob", result["id"])
    assert [(s["source"], s["ok"]) for s in undo["steps"]] == [("edge", True), ("edge", True)]
    assert fleet.haproxy_stat("s1")["weight"] == "1"


def test_an_undo_leaves_a_switch_someone_changed_since(fleet, adapters):
    result = degrade(fleet, adapters)
    fleet.consul.kv_put(KEY, json.dumps({"level": "newer", "by": "dave"}))

    undo = undo_action(fleet.qd, adapters, "bob", result["id"])

    assert undo["status"] == "failed"
    assert "changed since" in undo["steps"][0]["detail"]
    assert fleet.kv(KEY) == {"level": "newer", "by": "dave"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"until": "tomorrow"}, "params.until"),
        ({"until": "2020-01-01T00:00:00Z"}, "params.until"),
        ({"features_off": "all"}, "params.features_off"),
        ({"weight": 999}, "params.weight"),
        ({"percent": 5}, "params.percent"),
    ],
)
def test_bad_params_are_refused_naming_the_field(fleet, params, field):
    body = {"action": "degrade", "target": {"service": "web"}, "params": params}

    with pytest.raises(ActionRefused) as refused:
        parse_action_request(body)

    assert refused.value.status == 422
    assert field in refused.value.message


def test_a_service_action_refuses_an_instance_target(fleet):
    body = {"action": "degrade", "target": {"service": "web", "instance": "web-1"}}

    with pytest.raises(ActionRefused) as refused:
        parse_action_request(body)

    assert "whole service" in refused.value.message


def test_degrading_an_unknown_service_is_refused(fleet, adapters):
    req = ActionRequest("degrade", "nope", None, {"level": "x", "features_off": [],
                        "until": "2099-01-01T00:00:00Z"})  # fmt: skip

    with pytest.raises(ActionRefused) as refused:
        submit_action(fleet.qd, adapters, "alice", req)

    assert refused.value.code == "unknown_target"
