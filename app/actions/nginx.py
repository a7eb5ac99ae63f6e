"""Change an nginx upstream file: mark a server `down` or set its weight, validate, reload.

nginx 1.22 OSS has no runtime upstream API (that is NGINX Plus): a change is an edit of the
file, `nginx -t`, then `nginx -s reload`. The file is replaced atomically, and the previous
one is put back when validation or reload fails, so nginx never holds a file it refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.actions.steps import StepFailed
from collectors.nginx_conf import parse_upstream_text
from collectors.nginx_syntax import UpstreamConfError

STATES = ("ready", "down")
COMMAND_TIMEOUT_S = 30
# One `server` statement on one line: indent, address, parameters, `;`, what follows.
_SERVER_LINE = re.compile(
    r"^(?P<indent>\s*)server\s+(?P<address>[^\s;#]+)(?P<params>[^;#]*);(?P<rest>.*)$"
)


class NginxAdapter:
    """One `[[nginx]]` with an `upstream_conf`: read and edit its servers."""

    kind = "nginx"

    def __init__(
        self, name: str, upstream_conf: str, test: Sequence[str], reload: Sequence[str]
    ) -> None:
        self.name = name
        self.path = Path(upstream_conf)
        self.test = list(test)
        self.reload = list(reload)

    def read(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """Return {"state": ready|down, "weight"} of the server as the file configures it."""
        text = self._read_text()
        server = self._find(text, target)
        return {"state": "down" if server.down else "ready", "weight": server.weight}

    def describe(self, target: Mapping[str, Any], change: Mapping[str, Any]) -> str:
        """Say the edit, and the validate and reload that follow it."""
        words = []
        if "state" in change:
            words.append("mark down" if change["state"] == "down" else "remove down")
        if "weight" in change:
            words.append(f"set weight={change['weight']}")
        return (
            f"nginx {self.name}: {' and '.join(words)} on server {target['server']} of upstream "
            f"{target['upstream']} in {self.path}, then {' '.join(self.test)}, "
            f"then {' '.join(self.reload)}"
        )

    def apply(
        self,
        target: Mapping[str, Any],
        change: Mapping[str, Any],
        before: Mapping[str, Any] | None = None,
    ) -> str:
        """Edit, validate, reload; put the previous file back if validation or reload fails."""
        with self._file_lock():
            previous = self._read_text()
            server = self._find(previous, target)
            edited = edit_server_line(previous, server.line, server.address, change)
            _replace_file(self.path, edited)
            test = self._run(self.test)
            if test.returncode != 0:
                _replace_file(self.path, previous)
                raise StepFailed(
                    f"nginx {self.name}: {' '.join(self.test)} refused the edit "
                    f"(previous file restored): {_tail(test)}"
                )
            reload = self._run(self.reload)
            if reload.returncode != 0:
                _replace_file(self.path, previous)
                raise StepFailed(
                    f"nginx {self.name}: {' '.join(self.reload)} failed (previous file "
                    f"restored; nginx keeps running its last loaded configuration): {_tail(reload)}"
                )
        return f"edited line {server.line}, validated, reloaded"

    def _read_text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StepFailed(
                f"nginx {self.name}: cannot read {self.path}: {exc.strerror}"
            ) from None

    def _find(self, text: str, target: Mapping[str, Any]):
        try:
            parsed = parse_upstream_text(text, str(self.path))
        except UpstreamConfError as exc:
            raise StepFailed(f"nginx {self.name}: {exc}") from None
        for upstream in parsed.upstreams:
            if upstream.name != target["upstream"]:
                continue
            for server in upstream.servers:
                if server.address == target["server"]:
                    return server
        raise StepFailed(
            f"nginx {self.name}: no server {target['server']} in upstream {target['upstream']} "
            f"of {self.path}"
        )

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(argv, 127, "", str(exc))

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        # Two actions editing one file must not interleave their read-edit-write (any process).
        lock_path = self.path.with_name(f".{self.path.name}.quarterdeck-lock")
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def edit_server_line(text: str, line: int, address: str, change: Mapping[str, Any]) -> str:
    """Return the file with the `server` at `line` changed: `down` added/removed, weight set."""
    lines = text.splitlines(keepends=True)
    original = lines[line - 1]
    body = original.rstrip("\r\n")
    ending = original[len(body) :]
    match = _SERVER_LINE.match(body)
    if match is None or match["address"] != address:
        raise StepFailed(
            f"line {line}: the server {address} is not written on one line as "
            "`server ADDRESS params;`: edit it by hand"
        )
    params = match["params"].split()
    if "state" in change:
        if change["state"] not in STATES:
            raise StepFailed(f"state must be one of {', '.join(STATES)}")
        params = [p for p in params if p != "down"]
        if change["state"] == "down":
            params.append("down")
    if "weight" in change:
        weight = change["weight"]
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise StepFailed("an nginx weight is a whole number of at least 1 (use down for 0)")
        params = [p for p in params if not p.startswith("weight=")]
        params.insert(0, f"weight={weight}")
    words = " ".join([match["address"], *params])
    lines[line - 1] = f"{match['indent']}server {words};{match['rest']}{ending}"
    return "".join(lines)


def _replace_file(path: Path, text: str) -> None:
    """Write `text` beside `path` and rename it over: readers see the old or the new file."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _tail(result: subprocess.CompletedProcess, limit: int = 400) -> str:
    text = (result.stderr or result.stdout or f"exit status {result.returncode}").strip()
    return text[-limit:]
