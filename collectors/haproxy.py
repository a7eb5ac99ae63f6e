"""Read one HAProxy's stats CSV, over the runtime API (`show stat`) or the stats page (`;csv`).

HAProxy 2.6 management guide, section 9.1: the first line is a header starting
`# pxname,svname,`; columns are read by that header's names, never by position, since their
number grows between versions.
"""

from __future__ import annotations

import csv
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit

import requests

from collectors.balancers import BalancerProxy, BalancerServer, BalancerUpdate
from collectors.base import SourceUnavailable

HEADER_START = "# pxname,svname,"
REQUIRED_FIELDS = ("pxname", "svname", "type", "status", "scur")
# `type`: 0 frontend, 1 backend, 2 server, 3 listener (management guide 9.1, field 32).
PROXY_KINDS = {"0": "frontend", "1": "backend"}
SERVER_TYPE = "2"
# UP, DOWN, NOLB, DRAIN, MAINT; "UP 1/3" / "DOWN 1/2" while a check streak is in progress;
# a reason in brackets: "MAINT (via be/s1)", "DRAIN (agent)", "MAINT (resolution)".
STATUS_RE = re.compile(r"(UP|DOWN|NOLB|DRAIN|MAINT)(?: (\d+)/(\d+))?(?: \(([^()]*)\))?")
NO_CHECK = "no check"
DEFAULT_TIMEOUT_S = 5.0
_READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class ParsedStats:
    """The rows of one stats CSV, as balancer records."""

    servers: tuple[BalancerServer, ...]
    proxies: tuple[BalancerProxy, ...]


def server_state(status: str) -> tuple[str, bool]:
    """Return (state, transitional) for a server's status text; raise ValueError if unknown."""
    if status == NO_CHECK:
        return "unchecked", False
    match = STATUS_RE.fullmatch(status)
    if match is None:
        raise ValueError(f"unknown server status {status!r}")
    return match.group(1).lower(), match.group(2) is not None


# Record field <- CSV column, for the counts both kinds of row carry.
PROXY_COUNTS = (
    ("sessions", "scur"),
    ("max_sessions", "smax"),
    ("session_limit", "slim"),
    ("total_sessions", "stot"),
    ("session_rate", "rate"),
    ("request_rate", "req_rate"),
    ("http_5xx", "hrsp_5xx"),
)
SERVER_COUNTS = (
    *PROXY_COUNTS,
    ("weight", "weight"),
    ("check_failures", "chkfail"),
    ("last_change_s", "lastchg"),
)


def parse_stats(text: str) -> ParsedStats:
    """Parse `show stat` CSV into servers and proxies; raise SourceUnavailable if malformed."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith(HEADER_START):
        first = lines[0][:80] if lines else ""
        raise SourceUnavailable(
            f"stats CSV line 1: expected a header starting {HEADER_START!r}, got {first!r}"
        )
    header = lines[0][2:].rstrip(",").split(",")
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        raise SourceUnavailable(f"stats CSV line 1: header lacks {', '.join(missing)}")
    columns = _Columns(header)
    servers: list[BalancerServer] = []
    proxies: list[BalancerProxy] = []
    type_at = columns.index["type"]
    # Rows hold no quoted commas in practice, but a proxy name may; csv handles both.
    for number, row in enumerate(csv.reader(lines[1:]), start=2):
        if not row:
            continue
        if len(row) < len(header):
            raise SourceUnavailable(
                f"stats CSV line {number}: {len(row)} fields where the header names {len(header)}"
            )
        kind = row[type_at]
        if kind == SERVER_TYPE:
            servers.append(columns.server(number, row))
        elif kind in PROXY_KINDS:
            proxies.append(columns.proxy(number, row, PROXY_KINDS[kind]))
        elif not kind.isdigit():
            raise SourceUnavailable(f"stats CSV line {number}, field type: {kind!r} is no type")
    return ParsedStats(tuple(servers), tuple(proxies))


@lru_cache(maxsize=256)
def _cached_state(status: str) -> tuple[str, bool]:
    return server_state(status)


class _Columns:
    """Where each field is in this CSV's rows; every error names the line and the field."""

    def __init__(self, header: list[str]) -> None:
        self.index = {name: position for position, name in enumerate(header)}
        self.server_counts = [(f, c, self.index.get(c)) for f, c in SERVER_COUNTS]
        self.proxy_counts = [(f, c, self.index.get(c)) for f, c in PROXY_COUNTS]
        # Always there (REQUIRED_FIELDS):
        self.pxname, self.svname, self.status = (
            self.index[n] for n in ("pxname", "svname", "status")
        )
        # Newer or optional columns: absent ones read as empty.
        self.addr, self.check_status, self.bck = (
            self.index.get(n) for n in ("addr", "check_status", "bck")
        )

    def counts(self, number: int, row: list[str], wanted) -> dict[str, int | None]:
        values: dict[str, int | None] = {}
        for field_name, column, position in wanted:
            value = row[position] if position is not None else ""
            if value == "":
                values[field_name] = None  # HAProxy leaves a field empty when it does not apply
            elif value.isdigit():
                values[field_name] = int(value)
            else:
                raise _error(number, column, f"{value!r} is not a count")
        return values

    def server(self, number: int, row: list[str]) -> BalancerServer:
        status = row[self.status]
        try:
            state, transitional = _cached_state(status)
        except ValueError as exc:
            raise _error(number, "status", str(exc)) from None
        address, port = split_address(_text(row, self.addr))
        return BalancerServer(
            backend=row[self.pxname],
            server=row[self.svname],
            address=address,
            port=port,
            state=state,
            status=status,
            transitional=transitional,
            # A check in progress shows the last result prefixed "* " (management guide 9.1).
            check_status=_text(row, self.check_status).removeprefix("* "),
            backup=_text(row, self.bck) == "1",
            **self.counts(number, row, self.server_counts),
        )

    def proxy(self, number: int, row: list[str], kind: str) -> BalancerProxy:
        return BalancerProxy(
            name=row[self.pxname],
            kind=kind,
            status=row[self.status],
            **self.counts(number, row, self.proxy_counts),
        )


def _text(row: list[str], position: int | None) -> str:
    return row[position] if position is not None else ""


def _error(number: int, name: str, why: str) -> SourceUnavailable:
    return SourceUnavailable(f"stats CSV line {number}, field {name}: {why}")


def split_address(addr: str) -> tuple[str, int]:
    """Split `addr` ("10.0.0.5:8000", "[::1]:80"); a unix socket or none has no port."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return addr, 0
    return host.removeprefix("[").removesuffix("]"), int(port)


# -- fetching ---------------------------------------------------------------------------------


def runtime_command(runtime: str, command: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Send one runtime API command (`tcp://host:port`, `unix:///path`); return the answer."""
    target = urlsplit(runtime)
    try:
        with _connect(runtime, target, timeout_s) as sock:
            sock.sendall(command.encode() + b"\n")
            chunks = []
            # Non-interactive mode: HAProxy closes the connection after one answer.
            while chunk := sock.recv(_READ_CHUNK):
                chunks.append(chunk)
    except OSError as exc:
        raise SourceUnavailable(f"runtime API {runtime}: {exc}") from None
    return b"".join(chunks).decode("utf-8", "replace")


def _connect(runtime: str, target, timeout_s: float) -> socket.socket:
    if target.scheme == "tcp" and target.hostname and target.port:
        return socket.create_connection((target.hostname, target.port), timeout=timeout_s)
    if target.scheme != "unix":
        raise SourceUnavailable(f"runtime {runtime!r}: expected tcp://host:port or unix:///path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(target.path)
    except OSError:
        sock.close()
        raise
    return sock


def csv_url(stats_url: str) -> str:
    """Return the stats page's CSV form (`;csv` after the path)."""
    return stats_url if ";csv" in stats_url else stats_url + ";csv"


class HAProxyCollector:
    """One `[[haproxy]]`: its stats as one BalancerUpdate per pass."""

    kind = "haproxy"

    def __init__(
        self,
        name: str,
        *,
        stats_url: str = "",
        runtime: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: requests.Session | None = None,
    ) -> None:
        if not stats_url and not runtime:
            raise ValueError(f"haproxy {name!r}: needs stats_url or runtime")
        self.name = name
        self.stats_url = stats_url
        self.runtime = runtime
        self.clock = clock
        self.timeout_s = timeout_s
        self._http = http or requests.Session()

    @classmethod
    def from_config(cls, config, clock: Callable[[], datetime]) -> HAProxyCollector:
        """Build the collector of one `[[haproxy]]` section."""
        return cls(config.name, stats_url=config.stats_url, runtime=config.runtime, clock=clock)

    def fetch(self) -> str:
        """Read the stats CSV: over the runtime API when configured, else the stats page."""
        if self.runtime:
            return runtime_command(self.runtime, "show stat", self.timeout_s)
        url = csv_url(self.stats_url)
        try:
            response = self._http.get(url, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise SourceUnavailable(f"stats page {url}: {exc}") from None
        if response.status_code != 200:
            raise SourceUnavailable(f"stats page {url}: HTTP {response.status_code}")
        return response.text

    def collect(self) -> list[BalancerUpdate]:
        """Read the balancer once; raise SourceUnavailable when unreachable or malformed."""
        observed_at = self.clock()
        text = self.fetch()
        try:
            stats = parse_stats(text)
        except SourceUnavailable as exc:
            via = "runtime API" if self.runtime else "stats page"
            raise SourceUnavailable(f"{via}: {exc.reason}") from None
        return [
            BalancerUpdate(
                balancer=self.name,
                kind=self.kind,
                observed_at=observed_at,
                servers=stats.servers,
                proxies=stats.proxies,
            )
        ]
