"""`quarterdeck report run NAME [--out FILE]` and `quarterdeck report list`, as real processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from tests.reports.conftest import WEBHOOK_SECRET

SECRET_ENV = "QD_TEST_REPORT_WEBHOOK_SECRET"


@pytest.fixture
def cli(tmp_path, webhook_receiver):
    """A runner of `quarterdeck` with a migrated store and two reports, one with a webhook."""
    config = tmp_path / "quarterdeck.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "q.db"}"\n'
        '[[reports]]\nname = "handoff"\ndaily_at = "07:30"\n'
        f'webhook_url = "{webhook_receiver.url}"\nwebhook_secret_env = "{SECRET_ENV}"\n'
        '[[reports]]\nname = "weekly"\nperiod_h = 168\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTERDECK_")}
    env.update(QUARTERDECK_CONFIG=str(config), **{SECRET_ENV: WEBHOOK_SECRET})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
            cwd=tmp_path, env=env, timeout=60,
        )  # fmt: skip

    assert run("db", "upgrade").returncode == 0
    return run


def test_report_run_stores_delivers_and_writes_the_file(cli, tmp_path, webhook_receiver):
    out = tmp_path / "handoff.html"
    done = cli("report", "run", "handoff", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (
        "report handoff" in done.stdout
        and "webhook  sent: webhook answered HTTP 200" in done.stdout
    )
    assert out.read_text().startswith("<!doctype html>")
    assert webhook_receiver.verdicts == ["valid"]
    as_csv = tmp_path / "weekly.csv"
    assert cli("report", "run", "weekly", "--out", str(as_csv)).returncode == 0
    rows = list(csv.reader(as_csv.read_text().splitlines()))
    assert rows[0] == ["section", "field", "value"]
    listing = cli("report", "list")
    assert listing.returncode == 0
    assert "handoff" in listing.stdout and "daily 07:30 UTC" in listing.stdout
    assert "weekly" in listing.stdout and "on demand" in listing.stdout
    assert "delivered" in listing.stdout and "stored" in listing.stdout


def test_report_run_exits_1_when_a_delivery_failed_and_2_for_an_unknown_name(cli, webhook_receiver):
    webhook_receiver.script = [503]
    failed = cli("report", "run", "handoff")
    assert failed.returncode == 1
    assert "webhook  will retry: webhook answered HTTP 503" in failed.stdout
    unknown = cli("report", "run", "nope")
    assert unknown.returncode == 2
    assert "no [[reports]] entry is named 'nope' (handoff, weekly)" in unknown.stderr
    assert cli("report", "run", "weekly", "--out", "/no/such/dir/x.html").returncode == 2
