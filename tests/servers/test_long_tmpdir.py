"""The server fixtures work when TMPDIR is long (a unix socket's path is at most 107 bytes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every fixture that starts a server with a unix socket, or as another account.
SERVER_TESTS = [
    "tests/servers/test_postgres_server.py",
    "tests/servers/test_chromium_browser.py",
    "tests/servers/test_nginx_server.py",
]


def test_servers_start_under_a_long_private_tmpdir(tmp_path):
    # Like `TMPDIR=$(mktemp -d)/<120 characters>`: private to us, and far too long for sockets.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    long_tmpdir = private / ("d" * 120)
    long_tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "QUARTERDECK_TEST_DATABASE_URL"}
    env["TMPDIR"] = f"{long_tmpdir}/"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SERVER_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
