"""Marking a server `down` in nginx's upstream file, as an operator drains nginx OSS."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

RELOAD_TIMEOUT_S = 10.0


def mark_down(
    upstream_conf: Path, command: Sequence[str], master_pid: int | None, address: str, down: bool
) -> bool:
    """Add (or remove) `down` on the server at `address`, `nginx -t`, `nginx -s reload`.

    Returns whether the file changed. The file is put back if nginx refuses it. Returns once
    no worker of the old configuration accepts connections (open ones stay on the old
    workers until they close: the drain).
    """
    original = upstream_conf.read_text(encoding="utf-8")
    changed = with_down(original, address, down)
    if changed == original:
        return False
    upstream_conf.write_text(changed, encoding="utf-8")
    old_workers = accepting_workers(master_pid) if master_pid else set()
    for step in ("-t", "-s reload"):
        result = subprocess.run([*command, *step.split()], capture_output=True, text=True)
        if result.returncode != 0:
            upstream_conf.write_text(original, encoding="utf-8")
            raise RuntimeError(f"nginx {step} failed: {result.stderr.strip()}")
    # `-s reload` only signals the master: it starts new workers, then tells the old ones to
    # stop accepting.
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while master_pid and time.monotonic() < deadline:
        if not old_workers & accepting_workers(master_pid):
            break
        time.sleep(0.05)
    return True


def accepting_workers(master_pid: int) -> set[int]:
    """Return the pids of an nginx master's workers that still accept connections."""
    workers = set()
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent_pid = int(stat_path.read_text().rsplit(")", 1)[1].split()[1])
            title = (stat_path.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # the process just exited
        # nginx retitles a worker as it closes its listening sockets on a graceful stop.
        if parent_pid == master_pid and b"shutting down" not in title:
            workers.add(int(stat_path.parent.name))
    return workers


def with_down(upstreams: str, address: str, down: bool) -> str:
    """Return the upstream file with `down` added to (or removed from) the server at address."""
    lines = []
    for line in upstreams.splitlines(keepends=True):
        words = line.strip().rstrip(";").split()
        if len(words) >= 2 and words[0] == "server" and words[1] == address:
            params = [w for w in words[2:] if w != "down"] + (["down"] if down else [])
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}server {address}{''.join(' ' + p for p in params)};\n"
        lines.append(line)
    return "".join(lines)
