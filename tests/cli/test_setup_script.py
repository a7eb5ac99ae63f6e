"""`scripts/setup.sh` on a machine with pyenv shims: it finds a Python without their noise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a pyenv shim answers for a version that is installed but not selected (pyenv 2.x).
PYENV_SHIM = """#!/bin/sh
cat >&2 <<'NOISE'
pyenv: {name}: command not found

The `{name}' command exists in these Python versions:
  {version}

Note: See 'pyenv help global' for tips on allowing multiple
      Python versions to be found at the same time.
NOISE
exit 127
"""

# A Python 3.11 that can make a venv whose python "installs" anything at once.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/sh\\nexit 0\\n' > "$3/bin/python"
  chmod +x "$3/bin/python"
fi
exit 0
"""


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def test_setup_probes_pyenv_shims_quietly_and_picks_the_first_python_that_answers(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", checkout / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, version in (("python3.13", "3.13.0"), ("python3.12", "3.12.1")):
        write_executable(shims / name, PYENV_SHIM.format(name=name, version=version))
    write_executable(shims / "python3.11", FAKE_PYTHON)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "scripts/setup.sh", "--python-only"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "setup: creating .venv with python3.11" in result.stderr
    assert "pyenv" not in result.stderr and "command not found" not in result.stderr
    assert (checkout / ".venv" / ".quarterdeck-pyproject.sha256").exists()
