"""`quarterdeck collect --once` runs every probe once and records it, as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from app.config import load_config
from app.context import Quarterdeck
from app.models import ProbeResultRow, ProbeState


def run_cli(tmp_path, config_text: str, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "quarterdeck.toml"
    config.write_text(config_text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTERDECK_")}
    env["QUARTERDECK_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip


def test_collect_once_runs_each_probe_and_stores_its_result(tmp_path, endpoint):
    endpoint.health = (500, "text/plain", "down\x1b[31m")
    text = (
        f'[store]\nurl = "sqlite:///{tmp_path / "q.db"}"\n'
        '[[static_services]]\nname = "orders"\ninstances = ["10.0.0.5:8000"]\n'
        f'[[probes]]\nname = "checkout"\nservice = "orders"\nurl = "{endpoint.url}/health"\n'
        f'[[probes]]\nname = "home"\nservice = "orders"\nurl = "{endpoint.url}/nowhere"\n'
        "expect_status = 404\n"
    )
    assert run_cli(tmp_path, text, "db", "upgrade").returncode == 0
    result = run_cli(tmp_path, text, "collect", "--once")
    # A failing probe is recorded, not a failed source: the exit status stays 0.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "probe:checkout" in result.stdout and "failing" in result.stdout
    assert "status 500, expected 200" in result.stdout
    assert "\x1b" not in result.stdout
    assert "probe:home" in result.stdout and "passing" in result.stdout

    only = run_cli(tmp_path, text, "collect", "--once", "--only", "probe:home")
    assert only.returncode == 0 and "probe:home" in only.stdout
    assert "probe:checkout" not in only.stdout and "static" not in only.stdout

    qd = Quarterdeck.from_config(load_config(tmp_path / "quarterdeck.toml"))
    try:
        with qd.store.session() as db:
            states = {s.name: s.state for s in db.scalars(select(ProbeState))}
            runs = [r.name for r in db.scalars(select(ProbeResultRow).order_by(ProbeResultRow.id))]
    finally:
        qd.store.dispose()
    assert states == {"checkout": "failing", "home": "passing"}
    assert sorted(runs) == ["checkout", "home", "home"]
