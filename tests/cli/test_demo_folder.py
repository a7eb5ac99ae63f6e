"""The demo keeps its config and store in its own temporary folder, and says how to use the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_env(tmp_path):
    """A clean environment whose temporary folder is ours to inspect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_demo(tmp_path, env, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--bind", f"127.0.0.1:{port}", *extra],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return process, port


def read_cli_line(process: subprocess.Popen) -> str:
    """Read the demo's banner up to the line that shows how to call the CLI."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        if "QUARTERDECK_CONFIG=" in line:
            return line.strip()
    raise AssertionError("the demo printed no QUARTERDECK_CONFIG=… line")


def finish(process: subprocess.Popen, how: signal.Signals) -> str:
    """Stop the demo with a signal and return the rest of what it printed."""
    process.send_signal(how)
    try:
        # The demo stops its whole fleet first: on a busy machine that can take a while.
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()  # reaps it and closes its pipe (no ResourceWarning later)
    assert process.returncode in (0, -how, 128 + how), process.returncode
    return rest


def api_status(port: int, path: str, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def test_the_printed_cli_line_works_and_the_folder_goes_on_exit(tmp_path, demo_env):
    process, port = start_demo(tmp_path, demo_env)
    try:
        line = read_cli_line(process)
        config_path = Path(re.search(r"QUARTERDECK_CONFIG=(\S+)", line).group(1))
        folder = config_path.parent
        assert folder.parent == tmp_path / "tmp" and folder.name.startswith("quarterdeck-demo-")
        assert config_path.is_file() and str(folder) in config_path.read_text()
        assert not (tmp_path / "quarterdeck.db").exists()
        # The line is meant to be pasted into a shell: run it as it stands.
        words = shlex.split(line)
        assert words[2:] == ["token", "create", "me", "--role", "viewer"]
        created = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=demo_env, capture_output=True, text=True
        )
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        wait_for(lambda: api_status(port, "/healthz", token) == 200, "the demo answering", 30)
        assert api_status(port, "/api/v1/sources", token) == 200
    except BaseException:
        process.kill()
        process.communicate()
        raise
    rest = finish(process, signal.SIGTERM)
    assert not folder.exists()
    assert f"demo folder removed: {folder}" in rest
    assert list((tmp_path / "tmp").iterdir()) == []


def test_keep_leaves_the_folder_with_its_config_and_store(tmp_path, demo_env):
    process, port = start_demo(tmp_path, demo_env, "--keep")
    try:
        line = read_cli_line(process)
        # Interrupted once it serves, as a user would: on a busy machine a SIGINT in the middle
        # of its start has left the demo running past any timeout (an open issue of the demo).
        wait_for(lambda: api_status(port, "/healthz", "") == 200, "the demo answering", 60)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    config_path = Path(re.search(r"QUARTERDECK_CONFIG=(\S+)", line).group(1))
    rest = finish(process, signal.SIGINT)
    assert f"demo folder kept: {config_path.parent}" in rest
    assert config_path.is_file() and (config_path.parent / "quarterdeck-demo.db").is_file()
    listed = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", "create", "after", "--role", "viewer"],
        cwd=tmp_path,
        env={**demo_env, "QUARTERDECK_CONFIG": str(config_path)},
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and listed.stdout.startswith("qd_"), listed.stderr
