"""A runbook end to end on the real HAProxy, nginx and Consul double, and its undo as a whole."""

# "Not drained" reads startswith("UP"): HAProxy shows "UP 1/2" while one of its own checks
# is slow on a busy machine, which says nothing about the action.

from __future__ import annotations

import pytest

from app.actions.running import undo_action
from app.actions.steps import ActionRefused
from app.runbooks.book import parse_runbooks
from app.runbooks.running import submit_runbook
from app.store.audit import list_entries

EVACUATE = """
runbooks:
  evacuate:
    description: Consul first, then the balancers, once connections are gone
    steps:
      - action: drain
        only: [consul]
      - action: drain
        only: [haproxy]
      - wait_for: no_push_connections
        timeout_s: 10
      - action: drain
        only: [push]
      - check: other_instances_healthy
        params: {at_least: 1}
  stuck:
    steps:
      - action: drain
        only: [edge]
      - wait_for: instance_health
        params: {is: critical}
        timeout_s: 1
      - action: drain
        only: [consul]
  careful:
    steps:
      - check: other_instances_healthy
        params: {at_least: 2}
      - action: drain
  shed:
    target: service
    steps:
      - action: degrade
        params: {features_off: [recommendations]}
"""


@pytest.fixture
def book(fleet):
    fleet.qd.config = fleet.qd.config.replace(runbook_book=parse_runbooks(EVACUATE, "rb.yaml"))
    return fleet


def test_a_dry_run_plans_every_step_and_changes_nothing(book, adapters):
    plan = submit_runbook(book.qd, adapters, "alice", "evacuate", "web/web-1", dry_run=True)

    assert plan["status"] == "planned"
    assert [(r["runbook_step"], r["source"], r["set"]) for r in plan["plan"]] == [
        (1, "consul", {"maintenance": True, "reason": "drained with Quarterdeck"}),
        (2, "edge", {"state": "drain"}),
        (3, "runbook", {}),
        (4, "push", {"state": "down"}),
        (5, "runbook", {}),
    ]
    assert plan["runbook_steps"][2]["now"] == "0 push connections (at most 0)"
    assert plan["runbook_steps"][4]["now"].startswith("1 other passing (want 1): web-2")
    assert book.haproxy_status("s1").startswith("UP")
    assert not book.maintenance("web-1")
    with book.qd.store.session() as db:
        assert list_entries(db)[1] == 0


def test_a_runbook_runs_every_step_in_order_as_one_audit_entry(book, adapters):
    result = submit_runbook(book.qd, adapters, "alice", "evacuate", "web/web-1", reason="patch")

    assert result["status"] == "done", result["steps"]
    assert [(s["runbook_step"], s["ok"]) for s in result["steps"]] == [
        (1, True), (2, True), (3, True), (4, True), (5, True),
    ]  # fmt: skip
    assert book.maintenance("web-1")
    assert book.haproxy_status("s1") == "DRAIN"
    assert book.nginx_line("web-1").endswith("down;")
    with book.qd.store.session() as db:
        entries, total = list_entries(db)
    assert total == 1
    assert (entries[0].action, entries[0].params["runbook"], entries[0].actor) == (
        "runbook", "evacuate", "alice",
    )  # fmt: skip
    assert result["undo_url"] == f"/api/v1/actions/{result['id']}/undo"


def test_a_service_runbook_degrades_with_the_actions_defaults_its_runner_and_its_undo_restores(
    book, adapters
):
    result = submit_runbook(book.qd, adapters, "alice", "shed", "web", reason="overload")

    assert result["status"] == "done", result["steps"]
    switch = book.kv("quarterdeck/degrade/web")
    assert (switch["level"], switch["features_off"]) == ("degraded", ["recommendations"])
    assert switch["until"] > result["at"]  # an hour from now, the degrade action's default
    assert switch["by"] == "alice"  # who ran the runbook, as a degrade from the API says
    undo = undo_action(book.qd, adapters, "bob", result["id"])
    assert undo["status"] == "done", undo["steps"]
    assert book.kv("quarterdeck/degrade/web") is None


def test_undo_of_a_runbook_reverses_every_change_last_first(book, adapters):
    done = submit_runbook(book.qd, adapters, "alice", "evacuate", "web/web-1")

    undo = undo_action(book.qd, adapters, "bob", done["id"])

    assert undo["status"] == "done", undo["steps"]
    assert [s["source"] for s in undo["steps"]] == ["push", "edge", "consul"]
    assert book.haproxy_status("s1").startswith("UP")
    assert "down" not in book.nginx_line("web-1")
    assert not book.maintenance("web-1")


def test_a_wait_for_that_times_out_stops_the_runbook_and_its_undo_reverts_what_ran(book, adapters):
    result = submit_runbook(book.qd, adapters, "alice", "stuck", "web/web-1")

    assert result["status"] == "partial"
    assert [(s["runbook_step"], s["ok"]) for s in result["steps"]] == [(1, True), (2, False),
                                                                       (3, None)]  # fmt: skip
    assert result["steps"][1]["detail"].startswith("timed out after 1 s: web/web-1 is passing")
    assert book.haproxy_status("s1") == "DRAIN"
    assert not book.maintenance("web-1")  # step 3 never ran

    undo = undo_action(book.qd, adapters, "alice", result["id"])
    assert [s["source"] for s in undo["steps"]] == ["edge"]
    assert book.haproxy_status("s1").startswith("UP")


def test_draining_the_last_healthy_instance_is_refused_before_any_step(book, adapters):
    book.consul.register_check(
        "node-2", "service:web-2", "http", status="critical", service_id="web-2"
    )
    book.collect()

    with pytest.raises(ActionRefused) as refused:
        submit_runbook(book.qd, adapters, "alice", "evacuate", "web/web-1")

    assert refused.value.code == "last_healthy_instance"
    assert refused.value.message.startswith("step 1 (drain on consul):")
    assert not book.maintenance("web-1")


def test_a_target_of_the_wrong_shape_and_an_unknown_runbook_are_refused(book, adapters):
    with pytest.raises(ActionRefused) as shape:
        submit_runbook(book.qd, adapters, "alice", "evacuate", "web")
    with pytest.raises(ActionRefused) as unknown:
        submit_runbook(book.qd, adapters, "alice", "nope", "web/web-1")

    assert (shape.value.status, unknown.value.status) == (422, 404)


def test_a_check_that_fails_before_any_change_refuses_the_whole_run_at_plan_time(book, adapters):
    with pytest.raises(ActionRefused) as refused:
        submit_runbook(book.qd, adapters, "alice", "careful", "web/web-1")

    assert (refused.value.status, refused.value.code) == (409, "check_failed")
    assert refused.value.message == (
        "step 1 (check other_instances_healthy (at_least=2)): 1 other passing (want 2): web-2"
    )
    with book.qd.store.session() as db:
        assert list_entries(db)[1] == 0
