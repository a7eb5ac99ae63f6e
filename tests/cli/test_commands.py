"""The `quarterdeck` command line, run as a real process against a real store."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from app.config import load_config
from app.context import Quarterdeck
from app.factory import create_app


@pytest.fixture
def cli(tmp_path):
    """Return a runner of `quarterdeck` in a fresh directory with a config file."""
    config = tmp_path / "quarterdeck.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "q.db"}"\n'
        '[[static_services]]\nname = "orders"\ninstances = ["10.0.0.5:8000"]\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTERDECK_")}
    env["QUARTERDECK_CONFIG"] = str(config)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )

    run.config_path = config
    return run


def test_db_upgrade_user_add_token_create_and_collect(cli):
    assert cli("db", "upgrade").returncode == 0
    added = cli(
        "user",
        "add",
        "root-admin",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a long password here\n",
    )
    assert added.returncode == 0, added.stderr
    assert "a long password here" not in added.stdout + added.stderr
    again = cli(
        "user",
        "add",
        "root-admin",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a long password here\n",
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = cli("user", "add", "shorty", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 12" in short.stderr

    created = cli("token", "create", "ci-bot", "--role", "viewer")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("qd_") and "shown once" in created.stderr

    collected = cli("collect", "--once")
    assert collected.returncode == 0, collected.stderr
    assert "static" in collected.stdout and "ok" in collected.stdout

    app = create_app(qd=Quarterdeck.from_config(load_config(cli.config_path)))
    response = app.test_client().get(
        "/api/v1/services", headers={"Authorization": f"Bearer {token}"}
    )
    assert [s["name"] for s in response.json["services"]] == ["orders"]


def test_collect_once_exits_1_when_a_source_fails(cli, tmp_path):
    cli.config_path.write_text(
        cli.config_path.read_text() + '[consul]\nurl = "http://127.0.0.1:1"\nwait_s = 1\n'
    )
    assert cli("db", "upgrade").returncode == 0
    result = cli("collect", "--once", "--only", "consul")
    assert result.returncode == 1
    assert "consul" in result.stdout and "FAILED" in result.stdout


def test_collect_only_names_an_unknown_source(cli):
    cli("db", "upgrade")
    result = cli("collect", "--once", "--only", "nosuch")
    assert result.returncode == 2 and "nosuch" in result.stderr


def test_a_config_error_stops_the_command_with_the_key_and_file(cli):
    cli.config_path.write_text('[server]\nbnd = "x"\n')
    result = cli("db", "upgrade")
    assert result.returncode == 2
    assert "unknown key 'bnd'" in result.stderr and str(cli.config_path) in result.stderr


def test_commands_refuse_a_store_that_is_not_migrated(cli):
    result = cli("token", "create", "early", "--role", "viewer")
    assert result.returncode != 0 and "quarterdeck db upgrade" in result.stderr


def _run_in(folder, *args: str, stdin: str = "", config=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTERDECK_")}
    if config is not None:
        env["QUARTERDECK_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("token", "create", "early", "--role", "viewer"),
        ("user", "add", "early", "--role", "admin", "--password-stdin"),
        ("collect", "--once"),
    ],
)
def test_a_command_in_an_empty_folder_says_there_is_no_store_and_creates_none(tmp_path, args):
    result = _run_in(tmp_path, *args, stdin="a long password here\n")
    assert result.returncode != 0
    assert "no store at sqlite:///quarterdeck.db: run `quarterdeck db upgrade`" in result.stderr, (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_says_one_line_of_its_own_and_later_commands_log_nothing_of_alembic(cli):
    created = cli("db", "upgrade")
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"store at sqlite:///\S+ created at schema \w+\n", created.stdout)
    assert created.stderr == ""
    again = cli("db", "upgrade")
    assert "already at the newest schema" in again.stdout and again.stderr == ""
    token = cli("token", "create", "quiet", "--role", "viewer")
    assert token.returncode == 0
    assert "alembic" not in token.stderr and "INFO" not in token.stderr


def test_a_store_behind_the_code_names_both_schemas_and_the_command_that_fixes_it(cli, tmp_path):
    from app.store import migrate

    url = f"sqlite:///{tmp_path / 'q.db'}"
    migrate.upgrade(url, "0001")
    result = cli("token", "create", "early", "--role", "viewer")
    assert result.returncode != 0
    assert f"is at schema 0001, this version needs {migrate.head_revision()}" in result.stderr
    assert "run `quarterdeck db upgrade`" in result.stderr
    upgraded = cli("db", "upgrade")
    assert f"upgraded from schema 0001 to {migrate.head_revision()}" in upgraded.stdout
    assert cli("token", "create", "later", "--role", "viewer").returncode == 0


def test_an_empty_postgresql_database_is_reported_as_having_no_schema(postgres_url, tmp_path):
    config = tmp_path / "quarterdeck.toml"
    config.write_text(f'[store]\nurl = "{postgres_url}"\n', encoding="utf-8")
    result = _run_in(tmp_path, "token", "create", "early", "--role", "viewer", config=config)
    assert result.returncode != 0
    assert "has no schema yet: run `quarterdeck db upgrade`" in result.stderr, result.stderr


def test_a_failed_db_upgrade_says_why_in_one_line_without_a_traceback(cli, tmp_path):
    cli.config_path.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "no" / "dir" / "q.db"}"\n')
    result = cli("db", "upgrade")
    assert result.returncode == 1
    assert result.stderr == (
        "quarterdeck: db upgrade failed, the store is unchanged: unable to open database file\n"
    )
