"""`quarterdeck runbook list|run` on the real fleet: the same plan, run and audit as the API."""

from __future__ import annotations

from pathlib import Path

from app.cli import main
from app.store.audit import list_entries
from tests.actions.test_cli_action import config_file  # noqa: F401 (a fixture)
from tests.actions.test_runbooks import EVACUATE


def with_runbooks(config_file: str) -> str:  # noqa: F811
    path = Path(config_file)
    (path.parent / "runbooks.yaml").write_text(EVACUATE)
    path.write_text(path.read_text() + '[runbooks]\nfile = "runbooks.yaml"\n')
    return str(path)


def test_a_dry_run_prints_every_step_with_what_it_reads_now(fleet, config_file, capsys):  # noqa: F811
    config = with_runbooks(config_file)

    code = main(["--config", config, "runbook", "run", "evacuate", "--target", "web/web-1",
                 "--dry-run"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert "3. wait for no_push_connections (at most 10 s)" in out
    assert "now: 0 push connections (at most 0)" in out
    assert "haproxy edge: set server web/s1 state drain" in out
    assert fleet.haproxy_status("s1").startswith("UP")


def test_run_with_yes_is_one_audit_entry_that_action_undo_reverses(fleet, config_file, capsys):  # noqa: F811
    config = with_runbooks(config_file)

    code = main(["--config", config, "runbook", "run", "evacuate", "--target", "web/web-1",
                 "--yes", "--reason", "disk swap"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0, out
    assert "runbook evacuate web/web-1: done" in out
    assert fleet.haproxy_status("s1") == "DRAIN"
    with fleet.qd.store.session() as db:
        (entry,), _ = list_entries(db)
    assert entry.actor.startswith("cli") and entry.reason == "disk swap"

    assert main(["--config", config, "action", "undo", entry.id]) == 0
    assert fleet.haproxy_status("s1").startswith("UP")
    assert not fleet.maintenance("web-1")


def test_a_refused_runbook_exits_2_and_says_why(fleet, config_file, capsys):  # noqa: F811
    config = with_runbooks(config_file)

    code = main(["--config", config, "runbook", "run", "evacuate", "--target", "web"])

    assert code == 2
    assert "acts on an instance: target SERVICE/INSTANCE" in capsys.readouterr().err
