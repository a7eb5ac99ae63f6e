"""The agents' own check runners: TTL checks that expire, HTTP and TCP checks that probe.

Only checks registered with a definition (over HTTP: a TTL, HTTP or TCP check) run; checks the
Python API sets directly keep the status they are given. Follows agent/checks/check.go:
CheckTTL (critical with "TTL expired" when not updated in time), CheckHTTP (2xx passing, 429
warning, anything else critical; "HTTP GET <url>: 200 OK Output: <body>"), CheckTCP ("TCP
connect <addr>: Success"), a first run staggered at random within the interval, output capped
at 4 KiB (check_output_max_size).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from demo.consul.catalog import CRITICAL, PASSING, WARNING, Catalog, Check
from demo.consul.protocol import parse_duration
from demo.consul.raft import RaftState, Txn

log = logging.getLogger(__name__)

OUTPUT_MAX_BYTES = 4096
DEFAULT_TIMEOUT_S = 10.0
PROBE_WORKERS = 4
Key = tuple[str, str]


def cap_output(output: str) -> str:
    """Output beyond check_output_max_size, cut as Consul cuts it."""
    data = output.encode()
    if len(data) <= OUTPUT_MAX_BYTES:
        return output
    kept = data[:OUTPUT_MAX_BYTES].decode(errors="ignore")
    return f"{kept} ... (captured {OUTPUT_MAX_BYTES} of {len(data)} bytes)"


@dataclass
class _Probe:
    definition: str
    next_due: float


class AgentChecks:
    """TTL deadlines (applied by the Raft housekeeper) and a thread that runs HTTP/TCP probes."""

    def __init__(self, raft: RaftState, catalog: Catalog) -> None:
        self._raft = raft
        self._catalog = catalog
        self._random = random.Random()
        self._ttl_due: dict[Key, float] = {}
        self._probes: dict[Key, _Probe] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._running = False
        self._expiring = False
        catalog.on_check_put.append(self._check_put)
        raft.housekeepers.append(self.expire_ttls)

    # ----- TTL ------------------------------------------------------------------------------

    def update_ttl(self, check: Check, status: str, output: str) -> None:
        """A TTL update (agent/check/pass, warn, fail, update): set it and restart its timer."""
        with self._raft.transaction():
            self._catalog.register_check(replace(check, status=status, output=cap_output(output)))
            self._arm(check)

    def expire_ttls(self) -> float | None:
        """Turn overdue TTL checks critical; return the next deadline (lock held)."""
        if not self._ttl_due:
            return None
        now = time.monotonic()
        for key, due in list(self._ttl_due.items()):
            if due > now:
                continue
            del self._ttl_due[key]
            check = self._catalog.checks.get(key[0], {}).get(key[1])
            if check is None or "TTL" not in check.definition:
                continue
            # checks.CheckTTL.getExpiredOutput.
            output = "TTL expired"
            if check.output and not check.output.startswith("TTL expired"):
                output += f" (last output before timeout follows): {check.output}"
            self._expiring = True
            try:
                self._catalog.register_check(replace(check, status=CRITICAL, output=output))
            finally:
                self._expiring = False
        return min(self._ttl_due.values(), default=None)

    def _arm(self, check: Check) -> None:
        ttl = check.definition.get("TTL")
        if ttl:
            self._ttl_due[(check.node, check.check_id)] = time.monotonic() + parse_duration(ttl)

    # ----- probes ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run probes (with the listener: a stopped double is an agent that went away)."""
        with self._changed:
            if self._running:
                return
            self._running = True
            self._pool = ThreadPoolExecutor(PROBE_WORKERS, thread_name_prefix="consul-double-probe")
            self._thread = threading.Thread(
                target=self._run, name="consul-double-checks", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop running probes."""
        with self._changed:
            self._running = False
            thread, pool = self._thread, self._pool
            self._thread = self._pool = None
            self._changed.notify_all()
        if thread is not None:
            thread.join(timeout=5)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _check_put(self, txn: Txn, check: Check, existing: Check | None) -> None:
        definition = check.definition
        if "TTL" in definition and not self._expiring and existing is None:
            self._arm(check)
        if "HTTP" not in definition and "TCP" not in definition:
            return
        key = (check.node, check.check_id)
        encoded = json.dumps(definition, sort_keys=True)
        with self._changed:
            probe = self._probes.get(key)
            if probe is None or probe.definition != encoded:
                interval = parse_duration(definition.get("Interval") or "10s")
                # agent/checks: the first run is staggered at random within the interval.
                first = time.monotonic() + self._random.uniform(0, interval)
                self._probes[key] = _Probe(encoded, first)
                self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._running:
                    return
                now = time.monotonic()
                due = [key for key, probe in self._probes.items() if probe.next_due <= now]
                if not due:
                    upcoming = min((p.next_due for p in self._probes.values()), default=None)
                    self._changed.wait(None if upcoming is None else max(upcoming - now, 0.01))
                    continue
                pool = self._pool
            for key in due:
                check = self._current(key)
                if check is None:
                    with self._changed:
                        self._probes.pop(key, None)
                    continue
                interval = parse_duration(check.definition.get("Interval") or "10s")
                with self._changed:
                    if key in self._probes:
                        self._probes[key].next_due = time.monotonic() + interval
                if pool is not None:
                    with contextlib.suppress(RuntimeError):
                        pool.submit(self._probe, check)

    def _current(self, key: Key) -> Check | None:
        with self._raft.lock:
            check = self._catalog.checks.get(key[0], {}).get(key[1])
            if check is None or not ({"HTTP", "TCP"} & set(check.definition)):
                return None
            return replace(check, definition=dict(check.definition))

    def _probe(self, check: Check) -> None:
        definition = check.definition
        timeout = parse_duration(definition.get("Timeout") or "0s") or DEFAULT_TIMEOUT_S
        if "HTTP" in definition:
            status, output = _probe_http(definition, timeout)
        else:
            status, output = _probe_tcp(definition["TCP"], timeout)
        with self._raft.transaction():
            current = self._catalog.checks.get(check.node, {}).get(check.check_id)
            if current is None or current.definition != definition or not self._running:
                return
            self._catalog.register_check(replace(current, status=status, output=cap_output(output)))


# Probes ignore proxy variables: Go's ProxyFromEnvironment never proxies loopback (where checks
# of a local double point), and a proxy in between would answer in the service's place.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _probe_http(definition: dict, timeout: float) -> tuple[str, str]:
    method, url = definition.get("Method") or "GET", definition["HTTP"]
    headers = {"User-Agent": "Consul Health Check", "Accept": "text/plain, text/*, */*"}
    for name, values in (definition.get("Header") or {}).items():
        headers[name] = ", ".join(values) if isinstance(values, list) else str(values)
    scheme = url.partition("://")[0]
    if scheme not in ("http", "https"):
        # Go's net/http refuses any other scheme.
        return CRITICAL, f'{method} "{url}": unsupported protocol scheme "{scheme}"'
    body = definition.get("Body")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=body.encode() if body else None, headers=headers, method=method
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            code, reason, text = response.status, response.reason, response.read(OUTPUT_MAX_BYTES)
    except urllib.error.HTTPError as error:
        code, reason, text = error.code, error.reason, error.read(OUTPUT_MAX_BYTES)
    except (OSError, http.client.HTTPException, ValueError) as error:
        return CRITICAL, f'{method} "{url}": {_reason(error)}'
    status = PASSING if 200 <= code < 300 else WARNING if code == 429 else CRITICAL
    output = text.decode(errors="replace")
    return status, f"HTTP {method} {url}: {code} {reason} Output: {output}"


def _probe_tcp(address: str, timeout: float) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as error:
        return CRITICAL, f"dial tcp {address}: {_reason(error)}"
    return PASSING, f"TCP connect {address}: Success"


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    if isinstance(error, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(error, TimeoutError | socket.timeout):
        return "i/o timeout"
    return str(error) or type(error).__name__
