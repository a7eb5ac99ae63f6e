"""`quarterdeck action degrade|restore|canary|rollback|approve`: the API's code and audit."""

from __future__ import annotations

import pytest

from app.cli import main
from app.store.audit import list_entries
from tests.actions.test_cli_action import config_file  # noqa: F401 (a fixture)

KEY = "quarterdeck/degrade/web"


def test_degrade_dry_run_prints_the_switch_and_changes_nothing(fleet, config_file, capsys):  # noqa: F811
    code = main(["--config", config_file, "action", "degrade", "web", "--feature", "x",
                 "--dry-run"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0
    assert f"/v1/kv/{KEY}?cas=" in out
    assert fleet.kv(KEY) is None


def test_degrade_then_restore_with_yes_write_the_same_audit_as_the_api(fleet, config_file, capsys):  # noqa: F811
    code = main(["--config", config_file, "action", "degrade", "web", "--feature", "x",
                 "--level", "partial", "--for", "600", "--yes", "--reason", "slow db"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert "degrade web: done" in out
    value = fleet.kv(KEY)
    assert value["features_off"] == ["x"]
    assert value["by"].startswith("cli")
    assert main(["--config", config_file, "action", "restore", "web", "--yes"]) == 0
    assert fleet.kv(KEY) is None
    with fleet.qd.store.session() as db:
        rows, _ = list_entries(db, target="web")
        assert [r.action for r in rows] == ["restore", "degrade"]
        assert rows[1].reason == "slow db"


def test_a_bad_until_is_refused_with_exit_2(fleet, config_file, capsys):  # noqa: F811
    code = main(["--config", config_file, "action", "degrade", "web", "--until", "soon", "--yes"])

    assert code == 2
    assert "params.until" in capsys.readouterr().err


@pytest.fixture
def approval_config(config_file):  # noqa: F811
    with open(config_file, "a") as handle:
        handle.write("[actions]\nrequire_approval = true\n")
    return config_file


def test_with_approval_the_cli_waits_and_the_requester_cannot_approve(
    fleet, approval_config, capsys
):
    code = main(["--config", approval_config, "action", "degrade", "web", "--yes"])

    out = capsys.readouterr().out
    assert code == 0
    assert "awaiting_approval" in out
    entry_id = out.split("quarterdeck action approve ")[1].split()[0]
    assert fleet.kv(KEY) is None
    assert main(["--config", approval_config, "action", "approve", entry_id]) == 2
    assert "own_action" in capsys.readouterr().err
    assert fleet.kv(KEY) is None


def test_break_glass_from_the_cli_runs_and_says_so(fleet, approval_config, capsys):
    code = main(["--config", approval_config, "action", "degrade", "web", "--yes",
                 "--break-glass", "--reason", "outage"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert "BROKE GLASS" in out
    assert fleet.kv(KEY) is not None
