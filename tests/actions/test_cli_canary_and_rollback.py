"""`quarterdeck action canary|rollback SERVICE`: the API's code, plan and audit, from the shell."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from app.store.audit import list_entries
from tests.actions.test_cli_action import config_file  # noqa: F401 (a fixture)

RELEASES = "quarterdeck/releases/web"


@pytest.fixture
def fleet(make_fleet):
    """web-1 runs v1, web-2 runs v2 (config_file writes this fleet's configuration)."""
    return make_fleet(versions=("v1", "v2"))


def canary(config_file, *args) -> int:  # noqa: F811
    return main(["--config", config_file, "action", "canary", "web", "--from", "v1",
                 "--to", "v2", *args])  # fmt: skip


def test_a_canary_dry_run_prints_the_weights_and_changes_nothing(fleet, config_file, capsys):  # noqa: F811
    code = canary(config_file, "--percent", "10", "--dry-run")

    out = capsys.readouterr().out
    assert code == 0, out
    assert "plan: canary web" in out
    assert "haproxy edge: set server web/s2 state ready; set server web/s2 weight 1" in out
    assert "set server web/s1 state ready; set server web/s1 weight 9" in out
    assert "instances by version: v1: web-1; v2: web-2" in out
    assert fleet.haproxy_stat("s1")["weight"] == fleet.haproxy_stat("s2")["weight"] == "1"


def test_a_canary_step_then_its_abort_with_yes_move_the_weights_and_are_audited(
    fleet,
    config_file,  # noqa: F811
    capsys,
):
    assert canary(config_file, "--percent", "10", "--yes", "--reason", "try rc") == 0
    out = capsys.readouterr().out
    assert "canary web: done" in out, out
    assert (fleet.haproxy_stat("s1")["weight"], fleet.haproxy_stat("s2")["weight"]) == ("9", "1")

    assert canary(config_file, "--abort", "--yes") == 0

    assert fleet.haproxy_stat("s2")["weight"] == "0"
    assert fleet.nginx_line("web-2").endswith("down;")
    with fleet.qd.store.session() as db:
        rows, _ = list_entries(db, target="web")
    assert [(r.action, r.params["percent"], r.params["abort"]) for r in rows] == [
        ("canary", 0, True),
        ("canary", 10, False),
    ]
    assert rows[1].reason == "try rc" and rows[1].actor.startswith("cli")


def test_a_canary_share_out_of_range_is_refused_with_exit_2(fleet, config_file, capsys):  # noqa: F811
    code = canary(config_file, "--percent", "150", "--yes")

    assert code == 2
    assert "params.percent must be a whole number 0-100" in capsys.readouterr().err
    assert fleet.haproxy_stat("s1")["weight"] == "1"


def test_a_rollback_dry_run_names_the_release_and_changes_nothing(fleet, config_file, capsys):  # noqa: F811
    fleet.consul.kv_put(RELEASES, json.dumps({"active": "v2", "previous": "v1"}))

    code = main(["--config", config_file, "action", "rollback", "web", "--dry-run"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "release: v2 back to v1" in out
    assert "haproxy edge: set server web/s2 state drain" in out
    assert fleet.kv(RELEASES) == {"active": "v2", "previous": "v1"}
    assert fleet.haproxy_status("s2").startswith("UP")


def test_a_rollback_with_yes_moves_traffic_and_the_release_and_its_undo_puts_them_back(
    fleet,
    config_file,  # noqa: F811
    capsys,
):
    fleet.consul.kv_put(RELEASES, json.dumps({"active": "v2", "previous": "v1"}))

    code = main(["--config", config_file, "action", "rollback", "web", "--yes",
                 "--reason", "5xx on v2"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert "rollback web: done" in out
    assert fleet.haproxy_status("s2").startswith("DRAIN")
    releases = fleet.kv(RELEASES)
    assert (releases["active"], releases["previous"]) == ("v1", "v2")
    assert releases["history"][-1]["by"].startswith("cli")
    entry_id = out.split("quarterdeck action undo ")[1].split()[0]
    assert main(["--config", config_file, "action", "undo", entry_id]) == 0
    assert fleet.kv(RELEASES) == {"active": "v2", "previous": "v1"}
    assert fleet.haproxy_status("s2").startswith("UP")


def test_a_rollback_without_a_previous_release_is_refused_with_exit_2(
    fleet,
    config_file,  # noqa: F811
    capsys,
):
    code = main(["--config", config_file, "action", "rollback", "web", "--yes"])

    assert code == 2
    assert "refused (no_previous_release)" in capsys.readouterr().err
    assert fleet.haproxy_status("s2").startswith("UP")
