"""Canary step and abort, and rolling back a release: weights on HAProxy and nginx, the
releases key with CAS, each read back from the real servers and undone exactly."""

from __future__ import annotations

import json

import pytest

from app.actions.running import parse_action_request, submit_action, undo_action
from app.actions.services import canary_weights
from app.actions.sources import close_adapters
from app.actions.steps import ActionRefused
from tests.fixtures.processes import wait_for

RELEASES = "quarterdeck/releases/web"


@pytest.fixture
def versioned(make_fleet):
    """web-1 runs v1, web-2 runs v2."""
    fleet = make_fleet(versions=("v1", "v2"))
    adapters = fleet.adapters()
    yield fleet, adapters
    close_adapters(adapters)


def act(fleet, adapters, action, **params):
    body = {"action": action, "target": {"service": "web"}, "params": params}
    return submit_action(fleet.qd, adapters, "alice", parse_action_request(body))


def nginx_weight(fleet, instance: str) -> str:
    line = fleet.nginx_line(instance)
    words = line.rstrip(";").split()
    return next((w.removeprefix("weight=") for w in words if w.startswith("weight=")), "1")


@pytest.mark.parametrize(
    ("percent", "old", "new", "expected"),
    [(10, 1, 1, (9, 1)), (50, 2, 1, (1, 2)), (0, 1, 1, (1, 0)), (100, 3, 2, (0, 1)),
     (1, 1, 1, (99, 1)), (1, 200, 1, (99, 200)), (1, 300, 1, (33, 100)), (1, 257, 1, (99, 256))],
)  # fmt: skip
def test_canary_weights_give_the_new_version_its_share(percent, old, new, expected):
    assert canary_weights(percent, old, new) == expected


def test_a_canary_step_shifts_ten_percent_to_v2_on_both_balancers(versioned):
    fleet, adapters = versioned

    result = act(fleet, adapters, "canary", **{"from": "v1", "to": "v2", "percent": 10})

    assert result["status"] == "done", result["steps"]
    assert fleet.haproxy_stat("s1")["weight"] == "9"
    assert fleet.haproxy_stat("s2")["weight"] == "1"
    assert nginx_weight(fleet, "web-1") == "9"
    assert nginx_weight(fleet, "web-2") == "1"
    undo = undo_action(fleet.qd, adapters, "bob", result["id"])
    assert undo["status"] == "done", undo["steps"]
    assert fleet.haproxy_stat("s1")["weight"] == "1"
    assert nginx_weight(fleet, "web-1") == "1"


def test_a_canary_abort_takes_every_request_back_to_v1(versioned):
    fleet, adapters = versioned
    act(fleet, adapters, "canary", **{"from": "v1", "to": "v2", "percent": 50})

    result = act(fleet, adapters, "canary", **{"from": "v1", "to": "v2", "abort": True})

    assert result["status"] == "done", result["steps"]
    assert fleet.haproxy_stat("s2")["weight"] == "0"
    assert fleet.nginx_line("web-2").endswith("down;")
    # The reload is asynchronous: new workers take over a moment after the signal.
    wait_for(lambda: fleet.answers_through_nginx() == {"web-1"}, "nginx to send all to web-1", 10)


def test_a_canary_to_a_version_nobody_runs_is_refused(versioned):
    fleet, adapters = versioned

    with pytest.raises(ActionRefused) as refused:
        act(fleet, adapters, "canary", **{"from": "v1", "to": "v9", "percent": 10})

    assert refused.value.code == "unknown_version"
    assert "v1, v2" in refused.value.message


def test_rollback_moves_traffic_to_the_previous_version_and_writes_the_releases_key(versioned):
    fleet, adapters = versioned
    fleet.consul.kv_put(RELEASES, json.dumps({"active": "v2", "previous": "v1", "history": []}))

    result = act(fleet, adapters, "rollback")

    assert result["status"] == "done", result["steps"]
    assert [s["source"] for s in result["steps"]] == ["edge", "push", "edge", "push", "consul"]
    assert fleet.haproxy_status("s2").startswith("DRAIN")
    assert fleet.haproxy_status("s1").startswith("UP")
    assert fleet.nginx_line("web-2").endswith("down;")
    # The reload is asynchronous: new workers take over a moment after the signal.
    wait_for(lambda: fleet.answers_through_nginx() == {"web-1"}, "nginx to send all to web-1", 10)
    releases = fleet.kv(RELEASES)
    assert (releases["active"], releases["previous"]) == ("v1", "v2")
    assert releases["history"][-1]["by"] == "alice"
    assert releases["history"][-1]["from"] == "v2"


def test_undo_of_a_rollback_puts_back_the_release_and_the_traffic(versioned):
    fleet, adapters = versioned
    before = {"active": "v2", "previous": "v1", "history": [{"version": "v2"}]}
    fleet.consul.kv_put(RELEASES, json.dumps(before))
    result = act(fleet, adapters, "rollback")

    undo = undo_action(fleet.qd, adapters, "bob", result["id"])

    assert undo["status"] == "done", undo["steps"]
    assert fleet.kv(RELEASES) == before
    assert fleet.haproxy_status("s2").startswith("UP")
    assert "down" not in fleet.nginx_line("web-2")


def test_a_rollback_whose_releases_key_moved_is_partial_and_undoable(versioned):
    fleet, adapters = versioned
    fleet.consul.kv_put(RELEASES, json.dumps({"active": "v2", "previous": "v1"}))
    fleet.consul.inject_fault(f"/v1/kv/{RELEASES}", "cas_conflict", count=1)

    result = act(fleet, adapters, "rollback")

    assert result["status"] == "partial"
    assert [s["ok"] for s in result["steps"]] == [True, True, True, True, False]
    assert "CAS conflict" in result["steps"][-1]["detail"]
    assert fleet.kv(RELEASES) == {"by": "another writer"}
    undo = undo_action(fleet.qd, adapters, "bob", result["id"])
    assert undo["status"] == "done", undo["steps"]
    assert fleet.haproxy_status("s2").startswith("UP")


def test_a_rollback_without_a_previous_release_is_refused(versioned):
    fleet, adapters = versioned

    with pytest.raises(ActionRefused) as refused:
        act(fleet, adapters, "rollback")

    assert refused.value.code == "no_previous_release"
