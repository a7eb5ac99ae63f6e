"""Faults that happen at a rate, from one background thread: churn, output churn, spurious wakes.

- churn: re-registrations elsewhere in the datacenter. Real Consul moves `/v1/catalog/services`
  on every registration anywhere (hashicorp/consul#3934 measured ~3/s at 5k nodes); each churn
  event is a real change to one instance (its "double-churn" meta value), so it moves the
  services, nodes, service.<name> and node.<name> index entries as catalogInsertService does.
- output_churn: check outputs change without a status change, as agents sync a changed output
  (at most every check_update_interval): each moves the checks index and the check's service.
- spurious_wake: blocking queries under a path prefix return before their wait with nothing
  changed, at the same index or at one that moved (BlockingReads.spurious_wake).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from demo.consul.catalog import SERVICE_MAINT_PREFIX, Catalog, Check
from demo.consul.queries import BlockingReads

log = logging.getLogger(__name__)

RATE_FAULT_KINDS = ("churn", "output_churn", "spurious_wake")
CHURN_META_KEY = "double-churn"
MAX_RATE_PER_S = 1000.0
# A late thread catches up on at most this much missed schedule, not with a burst.
_MAX_LAG_S = 1.0
_CANDIDATES_TTL_S = 1.0
_SAMPLE = re.compile(r" \(sample \d+\)$")


@dataclass
class _RateFault:
    kind: str
    rate_per_s: float
    next_due: float
    path_prefix: str
    services: frozenset[str] | None
    exclude: frozenset[str]
    index_moves: bool | None
    ticks: int = 0


class RateFaults:
    """Runs the rate faults that are on; its thread starts with the first and ends at shutdown."""

    def __init__(self, catalog: Catalog, reads: BlockingReads, seed: int | None = None) -> None:
        self._catalog = catalog
        self._reads = reads
        self._raft = reads.raft
        self._random = random.Random(seed)
        self._changed = threading.Condition()
        self._faults: dict[str, _RateFault] = {}
        self._events: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._applying = False
        self._serial = 0
        self._candidates: dict[str, tuple[float, list]] = {}

    def start(
        self,
        kind: str,
        rate_per_s: float,
        path_prefix: str = "/v1/",
        services: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        index_moves: bool | None = None,
    ) -> None:
        """Run `kind` at rate_per_s events a second (replacing a running one of that kind)."""
        if kind not in RATE_FAULT_KINDS:
            raise ValueError(f"rate fault kind must be one of {RATE_FAULT_KINDS}, not {kind!r}")
        if not 0 < rate_per_s <= MAX_RATE_PER_S:
            raise ValueError(f"rate_per_s must be above 0 and at most {MAX_RATE_PER_S:g}")
        fault = _RateFault(
            kind,
            float(rate_per_s),
            time.monotonic() + 1 / rate_per_s,
            path_prefix,
            frozenset(services) if services is not None else None,
            frozenset(exclude),
            index_moves,
        )
        with self._changed:
            self._faults[kind] = fault
            self._candidates.pop(kind, None)
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="consul-double-rate-faults", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def stop(self, kind: str | None = None) -> None:
        """Stop one kind, or every kind; an event under way finishes before this returns."""
        with self._changed:
            if kind is None:
                self._faults.clear()
            else:
                self._faults.pop(kind, None)
            self._changed.notify_all()
            if threading.current_thread() is not self._thread:
                self._changed.wait_for(lambda: not self._applying, timeout=5)

    def events(self, kind: str) -> int:
        """How many events of a kind have happened (changes made, or queries woken)."""
        with self._changed:
            return self._events[kind]

    def running(self) -> list[str]:
        """The kinds that are on."""
        with self._changed:
            return sorted(self._faults)

    def shutdown(self) -> None:
        """Stop every kind and end the thread."""
        with self._changed:
            self._faults.clear()
            self._stopping = True
            thread, self._thread = self._thread, None
            self._changed.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                if not self._faults:
                    self._changed.wait()
                    continue
                fault = min(self._faults.values(), key=lambda f: f.next_due)
                now = time.monotonic()
                if fault.next_due > now:
                    self._changed.wait(fault.next_due - now)
                    continue
                fault.next_due = max(fault.next_due + 1 / fault.rate_per_s, now - _MAX_LAG_S)
                fault.ticks += 1
                spec = replace(fault)
                self._applying = True
            done = 0
            try:
                done = self._apply(spec)
            except (KeyError, ValueError) as error:
                # The chosen instance went away in between: Consul would simply skip it too.
                log.debug("consul double: %s skipped: %s", spec.kind, error)
            finally:
                with self._changed:
                    self._events[spec.kind] += done
                    self._applying = False
                    self._changed.notify_all()

    def _apply(self, fault: _RateFault) -> int:
        if fault.kind == "spurious_wake":
            moved = fault.ticks % 2 == 0 if fault.index_moves is None else fault.index_moves
            return self._reads.spurious_wake(fault.path_prefix, moved)
        with self._raft.lock:
            candidates = self._candidates_for(fault)
            if not candidates:
                return 0
            self._serial += 1
            chosen = self._random.choice(candidates)
            if fault.kind == "churn":
                self._churn(chosen)
            else:
                self._change_output(chosen)
        return 1

    def _churn(self, service_id: str) -> None:
        service = self._catalog.services[service_id]
        meta = {**service.meta, CHURN_META_KEY: str(self._serial)}
        # A catalog re-registration of the service alone: its checks stay as they are.
        self._catalog.register_service(replace(service, meta=meta), checks=None)

    def _change_output(self, key: tuple[str, str]) -> None:
        node, check_id = key
        check = self._catalog.checks[node][check_id]
        output = f"{_SAMPLE.sub('', check.output)} (sample {self._serial})"
        self._catalog.register_check(replace(check, output=output))

    def _candidates_for(self, fault: _RateFault) -> list:
        cached = self._candidates.get(fault.kind)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _CANDIDATES_TTL_S:
            return cached[1]
        if fault.kind == "churn":
            found: list = [
                service.id
                for service in self._catalog.services.values()
                if self._wanted(fault, service.name)
            ]
        else:
            found = [
                (check.node, check.check_id)
                for checks in self._catalog.checks.values()
                for check in checks.values()
                if _churnable_check(check) and self._wanted(fault, check.service_name)
            ]
        found.sort()
        self._candidates[fault.kind] = (now, found)
        return found

    @staticmethod
    def _wanted(fault: _RateFault, name: str) -> bool:
        if name == "consul" or name in fault.exclude:
            return False
        return fault.services is None or name in fault.services


def _churnable_check(check: Check) -> bool:
    return bool(check.service_id) and not check.check_id.startswith(SERVICE_MAINT_PREFIX)
