"""Drain with wait-for-zero: done only when the instance's connections reach 0, seen falling."""

from __future__ import annotations

import threading

import pytest

from app.actions.running import ActionRequest, submit_action
from app.actions.sources import close_adapters, configured_adapters
from app.actions.steps import ActionRefused
from app.store.audit import list_entries
from tests.actions.pages import Pages
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets

# A balancer-only backend's servers are all its instances: s1 counts as the last one serving.
WAIT = {"wait_for_zero": True, "wait_timeout_s": 30, "force": True}


def test_drain_waits_for_connections_to_reach_zero_and_shows_them_falling(push_fleet):
    qd = push_fleet.qd
    pages = Pages(push_fleet)
    with open_websockets(push_fleet.haproxy.frontend_ws_url, 4) as clients:
        wait_for(lambda: push_fleet.scur("s1") == 2, "two connections on s1")
        results: list[dict] = []
        adapters = configured_adapters(qd.config)
        request = ActionRequest("drain", "push", "s1", dict(WAIT), "move off s1")

        def run() -> None:
            try:
                results.append(submit_action(qd, adapters, "ops", request))
            except ActionRefused as exc:
                results.append({"status": "refused", "error": exc.message})

        runner = threading.Thread(target=run)
        runner.start()

        def progress() -> list:
            with qd.store.session() as db:
                rows, _ = list_entries(db)
            if not rows or rows[0].status != "running" or not rows[0].steps:
                return []
            return rows[0].steps[0]["progress"]["samples"]

        wait_for(lambda: len(progress()) >= 2 or results, "the wait's progress in the audit row")
        assert not results, "the drain reported done with connections still open"
        assert progress()[-1][1] == 2
        with qd.store.session() as db:
            running_id = list_entries(db)[0][0].id
        page = pages.get(f"/actions/{running_id}", "viewer").get_data(as_text=True)
        assert 'data-action-status="running"' in page
        assert 'data-drain-progress data-connections="2"' in page
        assert f'data-live-topic="action:{running_id}"' in page
        for client in clients:
            client.close()  # s2's too: only s1 is drained, so only its count is waited on
        runner.join(timeout=40)
        close_adapters(adapters)

    [result] = results
    assert result["status"] == "done", result
    wait = result["steps"][-1]
    assert wait["kind"] == "wait" and wait["ok"] is True
    assert wait["before"]["connections"] == 2 and wait["after"]["connections"] == 0
    assert wait["detail"].startswith("0 connections after")
    assert "undo_url" in result


def test_a_wait_that_times_out_is_partial_and_its_undo_puts_the_server_back(push_fleet):
    qd = push_fleet.qd
    with open_websockets(push_fleet.haproxy.frontend_ws_url, 2):
        wait_for(lambda: push_fleet.scur("s1") == 1, "a connection on s1")
        adapters = configured_adapters(qd.config)
        request = ActionRequest("drain", "push", "s1", {"wait_for_zero": True,
                                "wait_timeout_s": 2, "force": True}, "")  # fmt: skip
        try:
            result = submit_action(qd, adapters, "ops", request)
        finally:
            close_adapters(adapters)

    assert result["status"] == "partial"
    assert result["steps"][0]["ok"] is True
    assert "1 connection still open after 2 s" in result["steps"][-1]["detail"]
    assert "DRAIN" in push_fleet.haproxy.send_runtime("show stat")
    pages = Pages(push_fleet)
    html = pages.get(f"/actions/{result['id']}").get_data(as_text=True)
    assert "Partly done: 1 of 2 steps ran, then step 2 (connections) failed" in html
    form = pages.confirm_form("action=drain&service=push&instance=s1")  # for a CSRF token
    undone = pages.post(f"/actions/{result['id']}/undo", {"csrf_token": form["csrf_token"]})
    assert pages.wait_finished(undone.headers["Location"].rsplit("/", 1)[1])["status"] == "done"
    assert push_fleet.haproxy.send_runtime("show stat").count(",UP,") >= 2


@pytest.mark.parametrize(
    ("params", "action", "message"),
    [
        ({"wait_for_zero": "yes"}, "drain", "params.wait_for_zero must be true or false"),
        ({"wait_for_zero": True}, "ready", "applies to drain only"),
        ({"wait_for_zero": True, "wait_timeout_s": 241}, "drain", "from 1 to 240"),
        ({"wait_timeout_s": 5}, "drain", "needs wait_for_zero"),
    ],
)
def test_bad_wait_parameters_are_422_naming_the_field(fleet, params, action, message):
    from app.actions.running import parse_action_request

    body = {"action": action, "target": {"service": "web", "instance": "web-1"}, "params": params}
    with pytest.raises(ActionRefused) as refused:
        parse_action_request(body)
    assert refused.value.status == 422 and message in refused.value.message
    assert fleet.haproxy_status("s1") == "UP"
