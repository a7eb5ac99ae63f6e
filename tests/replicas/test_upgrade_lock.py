"""Replicas that migrate one empty store at once take turns: one creates it, the rest find it."""

from __future__ import annotations

import os
import subprocess
import sys

from app.store import migrate
from tests.replicas.conftest import ROOT


def test_three_db_upgrades_at_once_on_an_empty_postgresql_store_all_succeed(
    postgres_server, tmp_path
):
    url = postgres_server.create_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
    env["QUARTERDECK_STORE_URL"] = url
    env["QUARTERDECK_CONFIG"] = str(tmp_path / "none.toml")
    (tmp_path / "none.toml").write_text("")
    upgrades = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in upgrades]
    assert [p.returncode for p in upgrades] == [0, 0, 0], outputs
    assert sum("created at schema" in out for out in outputs) == 1, outputs
    assert migrate.revision_of(url) == migrate.head_revision()
