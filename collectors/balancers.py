"""What the access layer reports: the records HAProxy and nginx collectors both return.

A balancer update is a whole snapshot of one balancer (every backend or upstream and its
servers), so the store can replace what it held for that balancer. Counts a source does not
report stay None, never 0: nginx OSS has no per-server connection count, and a number that
is unknown must not read as "no connections".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# A server's state in one word, whatever the balancer's own wording (HAProxy 2.6 status
# strings; nginx upstream parameters). `status` keeps the source's own text beside it.
SERVER_STATES = ("up", "down", "maint", "drain", "nolb", "unchecked")


@dataclass(frozen=True)
class BalancerServer:
    """One server of a HAProxy backend or an nginx upstream, as the balancer sees it."""

    backend: str  # HAProxy backend or nginx upstream name
    server: str  # HAProxy server name; nginx has none, so "address:port"
    address: str = ""  # as configured: an IP or a host name
    port: int = 0
    state: str = "unchecked"  # one of SERVER_STATES
    status: str = ""  # the source's own text: "UP 1/3", "MAINT (via be/s1)", "down"
    transitional: bool = False  # HAProxy "UP 1/3" / "DOWN 1/2": a check streak in progress
    check_status: str = ""  # HAProxy: L4OK, L7STS, L4TOUT, ...
    weight: int | None = None
    backup: bool = False
    sessions: int | None = None  # current connections (HAProxy scur); None when not reported
    max_sessions: int | None = None  # smax
    session_limit: int | None = None  # slim (HAProxy) or max_conns (nginx)
    total_sessions: int | None = None  # stot
    session_rate: int | None = None  # rate: sessions per second over the last second
    request_rate: int | None = None  # req_rate (HTTP mode)
    http_5xx: int | None = None  # hrsp_5xx, a counter
    check_failures: int | None = None  # chkfail, a counter
    last_change_s: int | None = None  # lastchg: seconds since the state last changed
    max_fails: int | None = None  # nginx
    fail_timeout_s: float | None = None  # nginx


@dataclass(frozen=True)
class BalancerProxy:
    """A HAProxy frontend or backend as a whole (its aggregate row)."""

    name: str
    kind: str  # frontend | backend
    status: str = ""
    sessions: int | None = None
    max_sessions: int | None = None
    session_limit: int | None = None
    total_sessions: int | None = None
    session_rate: int | None = None
    request_rate: int | None = None
    http_5xx: int | None = None


@dataclass(frozen=True)
class BalancerConnections:
    """Connection totals of the whole balancer (nginx stub_status)."""

    active: int
    accepts: int | None = None
    handled: int | None = None
    requests: int | None = None
    reading: int | None = None
    writing: int | None = None
    waiting: int | None = None


@dataclass(frozen=True)
class BalancerUpdate:
    """Everything one balancer reported at one moment; replaces what was held for it."""

    balancer: str  # the configured name ([[haproxy]] / [[nginx]] `name`)
    kind: str  # haproxy | nginx
    observed_at: datetime
    servers: tuple[BalancerServer, ...] = ()
    proxies: tuple[BalancerProxy, ...] = ()
    connections: BalancerConnections | None = None
    # False when the source cannot count connections per server (nginx OSS).
    per_server_sessions: bool = True
