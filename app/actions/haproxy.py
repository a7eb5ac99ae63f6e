"""Change a HAProxy server over the runtime API: state ready|drain|maint, weight.

HAProxy 2.6 management guide 9.3: `set server <b>/<s> state ...` and `... weight ...` answer
an empty line on success; `show servers state <b>` reads back the admin state and user
weight that those commands set. Runtime changes are lost on reload unless the configuration
loads them back: `global server-state-file` + `defaults load-server-state-from-file global`,
with `show servers state > <file>` before each reload (docs/actions.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from app.actions.steps import StepFailed
from collectors.base import SourceUnavailable
from collectors.haproxy import DEFAULT_TIMEOUT_S, runtime_command

STATES = ("ready", "drain", "maint")
# srv_admin_state bits (src/server.h SRV_ADMF_*): forced, inherited, config and resolver
# maintenance; forced and inherited drain.
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_BITS = 0x08 | 0x10
# Names go into a runtime command line: anything that could end or extend it is refused.
_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
STATE_HEADER = "# be_id be_name srv_id srv_name"


def check_name(value: str, what: str) -> str:
    """Return a backend or server name fit for a runtime command; raise StepFailed if not."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise StepFailed(f"{what} {value!r} cannot be sent to the runtime API")
    return value


class HAProxyAdapter:
    """One `[[haproxy]]` with a `runtime` API: read and change its servers."""

    kind = "haproxy"

    def __init__(self, name: str, runtime: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.name = name
        self.runtime = runtime
        self.timeout_s = timeout_s

    def _send(self, command: str) -> str:
        try:
            return runtime_command(self.runtime, command, self.timeout_s)
        except SourceUnavailable as exc:
            raise StepFailed(f"haproxy {self.name}: {exc.reason}") from None

    def read(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """Return {"state": ready|drain|maint, "weight": user weight} of backend/server."""
        backend = check_name(target["backend"], "backend")
        server = check_name(target["server"], "server")
        text = self._send(f"show servers state {backend}")
        lines = text.splitlines()
        header = next((line for line in lines if line.startswith(STATE_HEADER)), None)
        if header is None:
            raise StepFailed(f"haproxy {self.name}: show servers state {backend}: {text.strip()!r}")
        names = header[2:].split()
        for line in lines:
            if not line or line.startswith("#") or line.strip().isdigit():
                continue
            row = dict(zip(names, line.split(), strict=False))
            if row.get("be_name") == backend and row.get("srv_name") == server:
                admin = int(row["srv_admin_state"])
                state = (
                    "maint" if admin & _MAINT_BITS else "drain" if admin & _DRAIN_BITS else "ready"
                )
                return {"state": state, "weight": int(row["srv_uweight"])}
        raise StepFailed(f"haproxy {self.name}: no server {backend}/{server}")

    def connections(self, target: Mapping[str, Any]) -> int:
        """Return the server's current sessions (`show stat` scur): what a drain waits out."""
        backend = check_name(target["backend"], "backend")
        server = check_name(target["server"], "server")
        lines = self._send("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise StepFailed(f"haproxy {self.name}: show stat: {lines[:1]!r}")
        header = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") == server:
                return int(row.get("scur") or 0)
        raise StepFailed(f"haproxy {self.name}: no server {backend}/{server} in show stat")

    def apply(
        self,
        target: Mapping[str, Any],
        change: Mapping[str, Any],
        before: Mapping[str, Any] | None = None,
    ) -> str:
        """Send `set server` for each changed field; raise StepFailed with HAProxy's answer."""
        for command in self._commands(target, change):
            answer = self._send(command).strip()
            if answer:  # success is an empty line; anything else is HAProxy refusing
                raise StepFailed(f"haproxy {self.name}: {command}: {answer}")
        return "; ".join(self._commands(target, change))

    def describe(self, target: Mapping[str, Any], change: Mapping[str, Any]) -> str:
        """Return the runtime commands the change sends."""
        return f"haproxy {self.name}: " + "; ".join(self._commands(target, change))

    def _commands(self, target: Mapping[str, Any], change: Mapping[str, Any]) -> list[str]:
        member = (
            f"{check_name(target['backend'], 'backend')}/{check_name(target['server'], 'server')}"
        )
        commands = []
        if "state" in change:
            if change["state"] not in STATES:
                raise StepFailed(f"state must be one of {', '.join(STATES)}")
            commands.append(f"set server {member} state {change['state']}")
        if "weight" in change:
            weight = change["weight"]
            if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 256:
                raise StepFailed("weight must be a whole number from 0 to 256")
            commands.append(f"set server {member} weight {weight}")
        return commands
