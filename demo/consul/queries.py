"""Blocking reads as Consul answers them: ?index/?wait, consistency modes, ?filter, meta headers."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from demo.consul.bexpr import FilterError, compile_filter
from demo.consul.protocol import (
    Disconnect,
    HTTPError,
    Request,
    Response,
    parse_duration,
    parse_uint64,
)
from demo.consul.raft import RaftState

# Consul agent: a blocking query waits 5 minutes by default and at most 10.
DEFAULT_WAIT_S = 300.0
MAX_WAIT_S = 600.0

Render = Callable[[], Any]
Predicate = Callable[[Any], bool]


@dataclass
class Visible:
    """What a render leaves after ACL filtering, and whether it removed anything."""

    body: Any
    filtered: bool


def keep_visible(authz: Any, items: Iterable[Any], allowed: Predicate) -> Visible:
    """The items the token may read (aclFilter's filter* functions, which report removals)."""
    if authz.unrestricted:
        return Visible(list(items), False)
    kept, removed = [], False
    for item in items:
        if allowed(item):
            kept.append(item)
        else:
            removed = True
    return Visible(kept, removed)


@dataclass(frozen=True)
class QueryOptions:
    """Blocking and consistency options of a read."""

    min_index: int
    wait_s: float
    consistency: str


def query_options(request: Request) -> QueryOptions:
    """Parse ?index, ?wait, ?stale and ?consistent as Consul does."""
    # agent/http.go parseWait: time.ParseDuration, then strconv.ParseUint(index, 10, 64).
    wait_s = 0.0
    if request.get("wait"):
        try:
            wait_s = parse_duration(request.get("wait"))
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
    min_index = 0
    if request.get("index"):
        try:
            min_index = parse_uint64(request.get("index"))
        except ValueError:
            raise HTTPError(400, "Invalid index") from None
    stale, consistent = request.has("stale"), request.has("consistent")
    if stale and consistent:
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    # agent/consul/rpc.go blockingQuery: a zero or negative wait is the default (5 min), the
    # cap is max_query_time (10 min), then up to wait/16 of jitter (lib.RandomStagger).
    if wait_s <= 0:
        wait_s = DEFAULT_WAIT_S
    wait_s = min(wait_s, MAX_WAIT_S)
    wait_s += random.uniform(0, wait_s / 16)
    consistency = "stale" if stale else "consistent" if consistent else "leader"
    return QueryOptions(min_index, wait_s, consistency)


def request_filter(request: Request) -> Predicate | None:
    """The compiled ?filter= of a request, or None; a bad expression is a 400."""
    if not request.get("filter"):
        return None
    try:
        return compile_filter(request.get("filter"))
    except FilterError as error:
        raise HTTPError(400, f"Failed to create boolean expression evaluator: {error}") from None


def required(value: str, message: str) -> str:
    """A path argument that must not be empty (400 with Consul's message otherwise)."""
    if not value:
        raise HTTPError(400, message)
    return value


@dataclass
class _Waiter:
    """A blocking query waiting on an index; a spurious wake marks it woken."""

    path: str
    key: str
    woken: bool = False


class BlockingReads:
    """Answer reads that block until their endpoint's index passes ?index, or ?wait elapses."""

    def __init__(self, raft: RaftState, is_live: Callable[[int], bool]) -> None:
        self.raft = raft
        self._is_live = is_live
        self._waiters: list[_Waiter] = []
        # Index entries moved by a spurious wake with nothing changed (see spurious_wake()).
        self._floors: dict[str, int] = {}

    def read(
        self,
        request: Request,
        index: Callable[[], int],
        render: Render,
        filterable: bool = False,
        index_key: str = "",
    ) -> Response:
        """Wait while index() <= ?index, then render under the same lock as the index.

        index_key names the index table entry the endpoint answers with, as Consul's state
        store names them ("services", "nodes", "checks", "service.<name>", "node.<name>");
        by default the request path.
        """
        options = query_options(request)
        predicate = request_filter(request) if filterable else None
        key = index_key or request.path

        def current() -> int:
            return max(index(), self._floors.get(key, 0))

        with self.raft.lock:
            if options.min_index:
                if request.spurious and current() <= options.min_index:
                    # An injected spurious wake: answer at once, with nothing changed.
                    self._wake([_Waiter(request.path, key)], moved=request.spurious == "moved")
                else:
                    self._block(request, key, lambda: current() > options.min_index, options)
            else:
                self.raft.housekeep()
            self.ensure_live(request)
            current_index = current()
            result = render()
        filtered = isinstance(result, Visible) and result.filtered
        if isinstance(result, Visible):
            result = result.body
        response = result if isinstance(result, Response) else Response(body=result)
        if filtered:
            # agent/http.go setResultsFilteredByACLs: the header only when something was removed
            # (api-docs/api-structure, "Results Filtered by ACLs").
            response.headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
        if predicate is not None and isinstance(response.body, list):
            response.body = [record for record in response.body if predicate(record)]
        # Consul never answers index 0: a client would then spin on ?index=0.
        response.headers.update(
            {
                "X-Consul-Index": str(max(current_index, 1)),
                "X-Consul-KnownLeader": "true",
                "X-Consul-LastContact": "0",
                "X-Consul-Effective-Consistency": options.consistency,
            }
        )
        return response

    def spurious_wake(self, path_prefix: str, moved: bool) -> int:
        """End every blocking query under path_prefix now, with nothing changed; return how many.

        Consul's docs (api-docs/features/blocking): "the return of a blocking request is no
        guarantee of a change" -- the wait may end, or an idempotent write may move the index.
        With moved, each woken query's index entry moves to a new Raft index (as a write that
        changes nothing the query shows would move it), so the client sees a higher
        X-Consul-Index and identical data; otherwise it returns at the index it sent.
        """
        with self.raft.lock:
            woken = [w for w in self._waiters if not w.woken and w.path.startswith(path_prefix)]
            self._wake(woken, moved)
            return len(woken)

    def wait(self, request: Request, ready: Callable[[], bool], timeout_s: float) -> None:
        """Block (lock held) until ready(), the timeout, or the listener stopping."""
        self.raft.wait_until(lambda: ready() or not self._is_live(request.epoch), timeout_s)

    def ensure_live(self, request: Request) -> None:
        """Drop the request if the listener stopped while it waited."""
        if not self._is_live(request.epoch):
            raise Disconnect

    def _block(
        self, request: Request, key: str, ready: Callable[[], bool], options: QueryOptions
    ) -> None:
        waiter = _Waiter(request.path, key)
        self._waiters.append(waiter)
        try:
            self.wait(request, lambda: waiter.woken or ready(), options.wait_s)
        finally:
            self._waiters.remove(waiter)

    def _wake(self, waiters: list[_Waiter], moved: bool) -> None:
        if not waiters:
            return
        if moved:
            # One Raft write that touches no table the woken queries render.
            index = self.raft.advance()
            for waiter in waiters:
                self._floors[waiter.key] = max(self._floors.get(waiter.key, 0), index)
        for waiter in waiters:
            waiter.woken = True
        self.raft.wake_all()
