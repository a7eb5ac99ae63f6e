"""Child processes of the demo: each in its own session, each ended if the demo dies."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Linux prctl(PR_SET_PDEATHSIG): the kernel signals the child when its parent thread ends,
# so even a demo killed with SIGKILL leaves no process behind. Elsewhere: best effort.
PR_SET_PDEATHSIG = 1
try:
    _PRCTL = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
STOP_TIMEOUT_S = 8.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _detach_and_die_with_parent() -> None:
    # Runs in the child between fork and exec: a session of its own (Ctrl-C in the terminal
    # reaches only the demo, which stops the children in order), and death with the parent.
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One child process with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | Path],
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.cwd = cwd
        # Added to the environment (a secret such as the ingest token, kept out of argv).
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen | None = None

    def start(self) -> Child:
        """Start (or restart) the process."""
        env = dict(os.environ)
        # Python children run this checkout's code, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: PLW1509 - preexec_fn is needed for prctl
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                preexec_fn=_detach_and_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int | None:
        """Return the process id while it runs."""
        return self.process.pid if self.running else None

    @property
    def running(self) -> bool:
        """Tell whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Return the exit code once the process has ended."""
        return None if self.process is None else self.process.poll()

    def signal(self, how: signal.Signals) -> None:
        """Send a signal to the process, if it runs."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(how)

    def log_tail(self, lines: int = 15) -> str:
        """Return the end of the log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(log unreadable: {error})"
        return "\n".join(text.splitlines()[-lines:])


def python_argv(module: str, *args: str | int | Path) -> list[str]:
    """Return the command line that runs a module of this project with this Python."""
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def stop_all(children: Sequence[Child], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each child, wait for all, then SIGKILL the process group of any that lingers."""
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in children:
        if child.process is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=max(deadline - time.monotonic(), 0.05))
    for child in children:
        if not child.running:
            continue
        # Each child leads its own process group: this also ends what it started (nginx workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
