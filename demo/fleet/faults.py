"""A per-instance fault switch: a file named after the instance in the fleet's faults folder.

The file holds words, one or more of:
  unhealthy  /health answers 503 (the Consul check and the balancers' checks fail)
  errors     half of the requests fail with 503 while /health still passes
  slow       every request takes 400 ms more
  spikes     a quarter of the requests take 800 ms more (a dependency that is sometimes slow)
  refuse     (push) new WebSocket handshakes are refused with 503
  drop       (push) every open WebSocket connection is closed now (once per write of the file)
An empty file means `unhealthy`. Removing the file ends the fault.
"""

from __future__ import annotations

import os
from pathlib import Path

MODES = ("unhealthy", "errors", "slow", "spikes", "refuse", "drop")


def write_fault(folder: Path, instance_id: str, *modes: str) -> Path:
    """Put an instance in fault (atomically, so a reader never sees half a file)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown fault mode {unknown[0]!r}; known: {', '.join(MODES)}")
    path = folder / instance_id
    partial = folder / f".{instance_id}.tmp"
    partial.write_text(" ".join(modes) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def clear_fault(folder: Path, instance_id: str) -> None:
    """End an instance's fault."""
    (folder / instance_id).unlink(missing_ok=True)


class FaultSwitch:
    """Read an instance's fault file; re-read only when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._modes: frozenset[str] = frozenset()
        # Bumped each time the file is (re)written, so `drop` acts once per write.
        self.generation = 0

    def modes(self) -> frozenset[str]:
        """Return the fault modes in force now (empty when the instance is healthy)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._modes = None, frozenset()
            return self._modes
        key = (stat.st_mtime_ns, stat.st_ino)
        if key != self._seen:
            try:
                words = self.path.read_text(encoding="utf-8").split()
            except FileNotFoundError:
                return frozenset()
            self._seen = key
            self._modes = frozenset(w for w in words if w in MODES) or frozenset({"unhealthy"})
            self.generation += 1
        return self._modes

    def has(self, mode: str) -> bool:
        """Tell whether `mode` is in force."""
        return mode in self.modes()
