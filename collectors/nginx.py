"""The nginx source: connection totals from stub_status, servers from the upstream file.

nginx open source reports connections for the whole server only (stub_status); it has no
per-server counts and no active health checks. So servers come from the configured upstream
file, their state is what the file says (`down` or not), not the result of a probe, and their
`sessions` stay None. The Prometheus push gauge is the per-instance count.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import requests

from collectors.balancers import BalancerConnections, BalancerServer, BalancerUpdate
from collectors.base import SourceUnavailable, SourceWarning
from collectors.nginx_conf import (
    Upstream,
    UpstreamConfError,
    UpstreamFile,
    UpstreamServer,
    parse_upstream_text,
)

TIMEOUT_S = 5.0
MAX_STATUS_BYTES = 4096  # stub_status is four short lines

# ngx_http_stub_status_module's exact layout (nginx 1.22):
_STATUS_LINES = (
    ("Active connections", re.compile(r"Active connections: (\d+) ?")),
    ("the header line", re.compile(r"server accepts handled requests")),
    ("accepts handled requests", re.compile(r" (\d+) (\d+) (\d+) ?")),
    ("Reading/Writing/Waiting", re.compile(r"Reading: (\d+) Writing: (\d+) Waiting: (\d+) ?")),
)

TOTALS_ONLY = SourceWarning(
    kind="totals_only",
    message=(
        "nginx open source reports connection totals only (stub_status): per-server "
        "connection counts are unknown, not zero; the Prometheus push gauge has them"
    ),
)
CONFIGURED_STATE = SourceWarning(
    kind="configured_state",
    message=(
        "server state is what the upstream file configures (down or not): nginx open "
        "source does no active health checks, so 'up' is not the result of a probe"
    ),
)


def parse_stub_status(text: str) -> BalancerConnections:
    """Read stub_status text; raise SourceUnavailable naming the first line that is wrong."""
    lines = text.strip("\n").split("\n")
    if len(lines) != len(_STATUS_LINES):
        raise SourceUnavailable(
            f"stub_status answer is not nginx's four lines (got {len(lines)}): {_preview(text)!r}"
        )
    numbers: list[int] = []
    for number, ((what, pattern), line) in enumerate(zip(_STATUS_LINES, lines, strict=True), 1):
        match = pattern.fullmatch(line.rstrip("\r"))
        if match is None:
            raise SourceUnavailable(f"stub_status line {number} is not {what}: {_preview(line)!r}")
        numbers.extend(int(value) for value in match.groups())
    active, accepts, handled, requests_, reading, writing, waiting = numbers
    return BalancerConnections(
        active=active,
        accepts=accepts,
        handled=handled,
        requests=requests_,
        reading=reading,
        writing=writing,
        waiting=waiting,
    )


def _preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def balancer_servers(upstreams: UpstreamFile) -> tuple[BalancerServer, ...]:
    """Turn the parsed upstream file into balancer servers (sessions unknown).

    A server is named by its address, so one listed twice in an upstream is kept once (the
    first entry; the parser notes the repeat).
    """
    servers: dict[tuple[str, str], BalancerServer] = {}
    for upstream in upstreams.upstreams:
        for server in upstream.servers:
            servers.setdefault((upstream.name, server.address), _balancer_server(upstream, server))
    return tuple(servers.values())


def _balancer_server(upstream: Upstream, server: UpstreamServer) -> BalancerServer:
    return BalancerServer(
        backend=upstream.name,
        server=server.address,
        address=server.host,
        port=server.port,
        state="down" if server.down else "up",
        status=server.status,
        weight=server.weight,
        backup=server.backup,
        sessions=None,  # nginx OSS has no per-server count
        session_limit=server.max_conns or None,  # 0: no limit
        max_fails=server.max_fails,
        fail_timeout_s=float(server.fail_timeout_s),
    )


class NginxCollector:
    """Read one nginx: its stub_status page and, when configured, its upstream file."""

    kind = "nginx"

    def __init__(
        self,
        name: str,
        status_url: str,
        upstream_conf: str = "",
        *,
        clock: Callable[[], datetime],
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.name = name
        self.status_url = status_url
        self.upstream_conf = upstream_conf
        self.clock = clock
        self.timeout_s = timeout_s
        self._http = requests.Session()
        self._warnings: list[SourceWarning] = []
        # The last upstream file's text, parsed, and its servers as records.
        self._last_file: tuple[str, UpstreamFile, tuple[BalancerServer, ...]] | None = None

    @classmethod
    def from_config(cls, config, *, clock: Callable[[], datetime]) -> NginxCollector:
        """Build the collector from one [[nginx]] section."""
        return cls(config.name, config.status_url, config.upstream_conf, clock=clock)

    def collect(self) -> list[BalancerUpdate]:
        """Read stub_status and the upstream file into one update; raise SourceUnavailable."""
        connections = parse_stub_status(self._fetch_status())
        read = self._read_upstreams()
        warnings = [TOTALS_ONLY]
        if read is None:
            warnings.append(
                SourceWarning(
                    kind="no_upstream_conf",
                    message="no upstream_conf is configured: only connection totals are read",
                )
            )
            servers: tuple[BalancerServer, ...] = ()
        else:
            upstreams, servers = read
            warnings.append(CONFIGURED_STATE)
            notes = [*upstreams.notes, *(n for u in upstreams.upstreams for n in u.notes)]
            warnings.extend(
                SourceWarning(kind="upstream_conf", message=f"{upstreams.path}: {note}")
                for note in notes
            )
        self._warnings = warnings
        return [
            BalancerUpdate(
                balancer=self.name,
                kind=self.kind,
                observed_at=self.clock(),
                servers=servers,
                connections=connections,
                per_server_sessions=False,
            )
        ]

    def warnings(self) -> list[SourceWarning]:
        """Return what the last successful pass found worth telling the operator."""
        return list(self._warnings)

    def _fetch_status(self) -> str:
        try:
            with self._http.get(self.status_url, timeout=self.timeout_s, stream=True) as response:
                body = b""
                for chunk in response.iter_content(1024):
                    body += chunk
                    if len(body) > MAX_STATUS_BYTES:
                        break
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"cannot reach stub_status at {self.status_url}: {exc}"
            ) from exc
        if response.status_code != 200:
            raise SourceUnavailable(
                f"stub_status at {self.status_url} answered HTTP {response.status_code}"
            )
        if len(body) > MAX_STATUS_BYTES:
            raise SourceUnavailable(
                f"stub_status at {self.status_url} answered more than {MAX_STATUS_BYTES} bytes: "
                "not a stub_status page"
            )
        return body.decode("ascii", errors="replace")

    def _read_upstreams(self) -> tuple[UpstreamFile, tuple[BalancerServer, ...]] | None:
        if not self.upstream_conf:
            return None
        try:
            text = Path(self.upstream_conf).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SourceUnavailable(
                f"cannot read upstream file {self.upstream_conf}: {exc.strerror or exc}",
                config_error=True,
            ) from exc
        # The file rarely changes between passes: the same text parses to the same result.
        if self._last_file is not None and self._last_file[0] == text:
            return self._last_file[1:]
        try:
            parsed = parse_upstream_text(text, self.upstream_conf)
        except UpstreamConfError as exc:
            raise SourceUnavailable(
                f"upstream file refused (nginx would refuse it too): {exc}", config_error=True
            ) from exc
        self._last_file = (text, parsed, balancer_servers(parsed))
        return self._last_file[1:]
