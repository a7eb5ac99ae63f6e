"""`quarterdeck action drain|ready|undo` runs the same code as the API and writes the same audit."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from app.store.audit import list_entries


@pytest.fixture
def config_file(fleet, tmp_path):
    config = fleet.qd.config
    haproxy, nginx = config.haproxy[0], config.nginx[0]
    path = tmp_path / "quarterdeck.toml"
    path.write_text(
        f"[store]\nurl = {json.dumps(config.store.url)}\n"
        f'[consul]\nurl = "{config.consul.url}"\ntoken_env = ""\nwait_s = 1\n'
        f'[[haproxy]]\nname = "edge"\nstats_url = "{haproxy.stats_url}"\n'
        f'runtime = "{haproxy.runtime}"\n'
        f'[[nginx]]\nname = "push"\nstatus_url = "{nginx.status_url}"\n'
        f"upstream_conf = {json.dumps(nginx.upstream_conf)}\n"
        f"reload = {json.dumps(list(nginx.reload))}\ntest = {json.dumps(list(nginx.test))}\n"
    )
    return str(path)


def test_a_dry_run_prints_the_plan_and_changes_nothing(fleet, config_file, capsys):
    code = main(["--config", config_file, "action", "drain", "web/web-1", "--dry-run"])

    out = capsys.readouterr().out
    assert code == 0
    assert "haproxy edge: set server web/s1 state drain" in out
    assert "left serving: web-2" in out
    assert fleet.haproxy_status("s1") == "UP"


def test_drain_with_yes_runs_and_is_audited_under_the_cli_user(fleet, config_file, capsys):
    code = main(["--config", config_file, "action", "drain", "web/web-1", "--yes",
                 "--reason", "disk swap"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert "drain web/web-1: done" in out
    assert fleet.haproxy_status("s1") == "DRAIN"
    assert fleet.nginx_line("web-1").endswith("down;")
    assert fleet.maintenance("web-1")
    with fleet.qd.store.session() as db:
        [entry], _ = list_entries(db)
    assert entry.actor.startswith("cli") and entry.reason == "disk swap"

    undo = main(["--config", config_file, "action", "undo", entry.id])

    assert undo == 0
    assert fleet.haproxy_status("s1") == "UP"
    assert not fleet.maintenance("web-1")


def test_without_yes_and_no_terminal_nothing_runs(fleet, config_file, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)

    code = main(["--config", config_file, "action", "drain", "web/web-1"])

    assert code == 1
    assert "nothing was changed" in capsys.readouterr().out
    assert fleet.haproxy_status("s1") == "UP"


def test_a_refused_action_exits_2_with_the_reason(fleet, config_file, capsys):
    code = main(["--config", config_file, "action", "ready", "web/web-9", "--yes"])

    assert code == 2
    assert "unknown_target" in capsys.readouterr().err


def test_a_dry_run_with_wait_plans_the_wait_step_and_names_the_callers(fleet, config_file, capsys):
    code = main(["--config", config_file, "action", "drain", "web/web-1", "--dry-run", "--wait",
                 "--wait-timeout", "30"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert "wait until web/web-1 holds 0 connections (edge web/s1 scur), at most 30 s" in out
    assert "now: {'connections': 0, 'counted_by': 'edge'}" in out
    assert "callers: none known (no service is seen calling it" in out


def test_wait_is_a_drain_option_only(fleet, config_file, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["--config", config_file, "action", "ready", "web/web-1", "--yes", "--wait"])

    assert refused.value.code == 2
    assert "unrecognized arguments: --wait" in capsys.readouterr().err
    assert fleet.haproxy_status("s1") == "UP"
