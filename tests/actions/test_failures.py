"""A failure half-way: an exact partial report, a restored nginx file, and a working undo."""

from __future__ import annotations

import pytest

from app.actions.running import ActionRequest, submit_action, undo_action
from app.actions.sources import close_adapters
from app.actions.steps import ActionRefused
from tests.actions.conftest import missing_config, reload_without_master


def drain(fleet, adapters):
    return submit_action(fleet.qd, adapters, "alice", ActionRequest("drain", "web", "web-1"))


def outcome(result):
    return [(s["source"], s["ok"]) for s in result["steps"]]


@pytest.fixture
def built(make_fleet):
    made = []

    def build(**commands):
        fleet = make_fleet(**commands)
        adapters = fleet.adapters()
        made.append(adapters)
        return fleet, adapters

    yield build
    for adapters in made:
        close_adapters(adapters)


def test_haproxy_socket_closed_fails_the_first_step_and_nothing_else_runs(fleet, adapters):
    fleet.haproxy.stop()

    result = drain(fleet, adapters)

    assert result["status"] == "failed"
    assert outcome(result) == [("edge", False), ("push", None), ("consul", None)]
    assert "runtime API" in result["steps"][0]["detail"]
    assert "down" not in fleet.nginx_line("web-1")
    assert not fleet.maintenance("web-1")
    assert "undo_url" not in result
    with pytest.raises(ActionRefused) as refused:
        undo_action(fleet.qd, adapters, "bob", result["id"])
    assert refused.value.code == "nothing_to_undo"


def test_nginx_t_refusing_restores_the_file_and_reports_a_partial_drain(built):
    fleet, adapters = built()
    # A real `nginx -t` that fails: its configuration file is missing.
    adapters["push"].test = missing_config(fleet.nginx)
    before = fleet.nginx.upstream_conf.read_text()

    result = drain(fleet, adapters)

    assert result["status"] == "partial"
    assert outcome(result) == [("edge", True), ("push", False), ("consul", None)]
    assert "previous file restored" in result["steps"][1]["detail"]
    assert "gone.conf" in result["steps"][1]["detail"]
    assert fleet.nginx.upstream_conf.read_text() == before
    assert fleet.haproxy_status("s1") == "DRAIN"
    undo = undo_action(fleet.qd, adapters, "bob", result["id"])
    assert outcome(undo) == [("edge", True)]
    assert fleet.haproxy_status("s1") == "UP"


def test_a_failed_reload_restores_the_file(built, tmp_path):
    fleet, adapters = built()
    adapters["push"].reload = reload_without_master(fleet.nginx, tmp_path)
    before = fleet.nginx.upstream_conf.read_text()

    result = drain(fleet, adapters)

    assert outcome(result) == [("edge", True), ("push", False), ("consul", None)]
    assert "failed (previous file restored" in result["steps"][1]["detail"]
    assert "none.pid" in result["steps"][1]["detail"]
    assert fleet.nginx.upstream_conf.read_text() == before


def test_consul_500_leaves_the_balancers_drained_and_undo_restores_them(fleet, adapters):
    fleet.consul.inject_fault("/v1/agent/service/maintenance/", "http_500", count=1)

    result = drain(fleet, adapters)

    assert result["status"] == "partial"
    assert outcome(result) == [("edge", True), ("push", True), ("consul", False)]
    assert "HTTP 500" in result["steps"][2]["detail"]
    assert not fleet.maintenance("web-1")
    assert result["undo_url"] == f"/api/v1/actions/{result['id']}/undo"
    undo = undo_action(fleet.qd, adapters, "bob", result["id"])
    assert outcome(undo) == [("push", True), ("edge", True)]
    assert fleet.haproxy_status("s1") == "UP"
    assert "down" not in fleet.nginx_line("web-1")
