"""Consul: the service catalog and instance health, watched with blocking queries.

After one full pass, four long polls run in background threads and a reconciler fetches
services again when needed:

- health, the fast path: `/v1/health/state/critical` and `/v1/health/state/warning` (only the
  checks that are not passing: small in a healthy fleet). A new pair patches the records of the
  services whose checks it changed, from what the collector already holds: no refetch, never
  behind a reconciliation.
- `/v1/catalog/services`, a hint: a new name or changed tags are fetched at once; a name gone
  from an answer ACLs did not filter is gone; any other move queues a background sweep.
- `/v1/catalog/nodes`: a node whose address or meta changed, or that left, has its services
  fetched again (their instances may take their address from it).

A quiet datacenter costs four idle requests per `wait_s`. See docs/architecture.md (Consul).

The client is py-consul, the maintained successor of python-consul (unmaintained since 2018);
it installs the same `consul` import, so never install both.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from collectors.base import CatalogUpdate, SourceUnavailable, SourceWarning
from collectors.consul_acl import AclFilters
from collectors.consul_api import CATALOG, HEALTH_STATE, NODES, Answer, ConsulReader
from collectors.consul_model import (
    NON_PASSING,
    CatalogModel,
    parse_catalog,
    parse_health,
    parse_nodes,
    parse_service,
)
from collectors.consul_reconcile import MIN_SWEEP_INTERVAL_S, SWEEP_RATE_PER_S, Reconciler
from collectors.consul_watch import CHURN_ENTER_MOVES, Watch

# Slow loops while an index churns: health stays well inside its latency goal, hints wait more.
HEALTH_CHURN_INTERVAL_S = 0.1
# The non-passing lists are small, so reading them often is cheap: a burst of check changes
# (an outage flips many at once) is not churn; only a steady stream of moves is.
HEALTH_CHURN_ENTER_MOVES = 20
# Both non-passing lists move with the checks index: apply one only with the other caught up
# (a check moving from critical to warning must not look passing in between), or after this.
PAIR_WAIT_S = 0.25
HINT_CHURN_INTERVAL_S = 1.0
# Outputs of passing checks are not on the fast path: sweep for them this often. Consul agents
# sync a changed output only every check_update_interval (5 min by default) anyway.
SWEEP_EVERY_S = 300.0


class ConsulCollector:
    """Read services, instances and checks from a Consul agent."""

    kind = "consul"
    blocking = True

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        datacenter: str = "",
        verify: bool | str = True,
        wait_s: int = 60,
        clock: Callable[[], datetime],
        name: str = "consul",
        health_watch: str = NON_PASSING,
        sweep_every_s: float = SWEEP_EVERY_S,
        sweep_rate_per_s: float = SWEEP_RATE_PER_S,
        min_sweep_interval_s: float = MIN_SWEEP_INTERVAL_S,
        pair_wait_s: float = PAIR_WAIT_S,
    ) -> None:
        parts = urlsplit(url)
        self.name = name
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 8500)
        self._reader = ConsulReader(
            host=host,
            port=port,
            scheme=parts.scheme or "http",
            token=token or None,
            datacenter=datacenter or None,
            verify=verify,
        )
        # Shown in errors on pages and in logs: never with credentials from the URL.
        self.url = self._reader.url
        self.wait_s = max(1, wait_s)
        self.clock = clock
        self.health_watch = health_watch
        self.sweep_every_s = sweep_every_s
        self.sweep_rate_per_s = sweep_rate_per_s
        self.min_sweep_interval_s = min_sweep_interval_s
        self.pair_wait_s = pair_wait_s
        # A healthy watch reports at least once per wait (plus Consul's jitter of wait/16).
        self.stale_after_s = self.wait_s * 1.25 + 15
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._generation = 0
        self._model: CatalogModel | None = None
        self._last_model: CatalogModel | None = None
        self._start_answers: dict[str, Answer] = {}
        self._watches: dict[str, Watch] = {}
        self._reconciler: Reconciler | None = None
        self._fetched: dict[str, Answer] = {}
        self._reconcile_error: SourceUnavailable | None = None
        self._pair_since: float | None = None
        self._full_pass_s = 0.0
        self._threads: list[threading.Thread] = []
        self._acl = AclFilters()

    @classmethod
    def from_config(cls, config, *, clock: Callable[[], datetime]) -> ConsulCollector:
        """Build the collector from the [consul] section."""
        verify: bool | str = config.verify_tls
        if config.verify_tls and config.ca_file:
            verify = config.ca_file
        return cls(
            config.url,
            token=os.environ.get(config.token_env) if config.token_env else None,
            datacenter=config.datacenter,
            verify=verify,
            wait_s=config.wait_s,
            clock=clock,
        )

    # -- reads ------------------------------------------------------------------------------

    @property
    def _health_states(self) -> tuple[str, ...]:
        return ("critical", "warning") if self.health_watch == NON_PASSING else ("any",)

    def _health_reader(self, state: str) -> Callable[[int, str], Answer]:
        return lambda index, wait: self._reader.health_state(state, index, wait)

    def _take_health(self, answers: list[Answer]) -> tuple[int, dict]:
        """Merge the health lists, the newest last; their index is the oldest of theirs."""
        for state, answer in zip(self._health_states, answers, strict=True):
            self._acl.note_read(f"{HEALTH_STATE}{state}", answer.filtered)
        return min(a.index for a in answers), self._merge_health(answers)

    def _merge_health(self, answers: list[Answer]) -> dict:
        """The checks the lists name; a check in two lists (it moved) is taken from the newer."""
        items: dict = {}
        by_index = sorted(zip(self._health_states, answers, strict=True), key=lambda p: p[1].index)
        for state, answer in by_index:
            items.update(parse_health(answer.data, f"{HEALTH_STATE}{state}"))
        return items

    def _fetch_many(self, names: list[str]) -> dict[str, Answer]:
        """Fetch services, skipping the decode of those whose index has not moved."""
        with self._cond:
            model = self._model or self._last_model
            known = {n: model.known_index(n) if model else None for n in names}
        if self._stop.is_set():
            raise SourceUnavailable("the Consul collector was closed")
        return self._reader.health_services(known)

    # -- collection -------------------------------------------------------------------------

    def collect(self) -> list[CatalogUpdate]:
        """Return a full catalog on the first call, then block until something changes.

        A later call returns `[]` once every watch has answered without a change (about
        `wait_s`), so a success means Consul was heard from just now.
        """
        try:
            if self._model is None:
                return [self._full_pass()]
            return self._next_update()
        finally:
            if self._stop.is_set():
                self._reader.close_thread_client()

    def _full_pass(self) -> CatalogUpdate:
        started = time.monotonic()
        catalog = self._reader.catalog_services()
        nodes = self._reader.catalog_nodes()
        health = [self._reader.health_state(state) for state in self._health_states]
        observed_at = self.clock()
        model = CatalogModel(mode=self.health_watch)
        model.catalog = parse_catalog(catalog.data)
        model.nodes = parse_nodes(nodes.data)
        with self._cond:
            model.set_health(*self._take_health(health))
        answers = self._fetch_many(sorted(model.catalog))
        previous = self._last_model
        for name, answer in answers.items():
            self._note_service(name, answer)
            old = previous.services.get(name) if previous else None
            if answer.unchanged and old is not None:
                model.set_service(name, old)  # the same answer as before the start-over
            elif answer.data:
                model.set_service(
                    name, parse_service(name, answer.index, answer.data, old, answer.filtered)
                )
            elif answer.filtered and old is not None:
                model.set_service(name, old)
        with self._cond:
            self._acl.note_read(CATALOG, catalog.filtered)
            self._acl.note_read(NODES, nodes.filtered)
            self._full_pass_s = time.monotonic() - started
            self._model = model
            self._start_answers = {
                "catalog": catalog,
                "nodes": nodes,
                **dict(zip(self._health_states, health, strict=True)),
            }
        records = model.changed_records(set(model.services))
        # A catalog narrowed by ACLs does not list every service: none may be taken as gone.
        return CatalogUpdate(
            observed_at=observed_at, services=records, complete=not catalog.filtered
        )

    def _next_update(self) -> list[CatalogUpdate]:
        if self._stop.is_set():
            return []
        if not self._watches:
            self._start_watches()
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            answered = {name: w.state.answers for name, w in self._watches.items()}
        while True:
            with self._cond:
                events = self._take_events(answered, deadline)
            if events is None:
                return []
            try:
                update = self._apply(*events)
            except Exception:
                # The model may already hold what was not returned: start over.
                with self._cond:
                    self._reset()
                raise
            if update.services or update.removed:
                return [update]

    def _take_events(self, answered: dict[str, int], deadline: float):
        """Wait for new answers (caller holds the lock); None once all answered unchanged."""
        while not self._stop.is_set():
            errors = [w.state.error for w in self._watches.values() if w.state.error]
            if self._reconcile_error is not None:
                errors.append(self._reconcile_error)
            if errors:
                # Start over from a full pass once Consul answers again.
                self._reset()
                raise errors[0]
            changed = {n: w for n, w in self._watches.items() if w.state.changed}
            health = [self._watches[state] for state in self._health_states]
            if (
                any(w.state.changed for w in health)
                and not self._unambiguous(health)
                and not self._paired(health)
            ):
                self._cond.wait(0.01)
                continue
            if changed or self._fetched:
                for watch in changed.values():
                    watch.state.changed = False
                fetched, self._fetched = self._fetched, {}
                moved = any(w.name in changed for w in health)
                return (
                    self._watches["catalog"].state.answer if "catalog" in changed else None,
                    self._watches["nodes"].state.answer if "nodes" in changed else None,
                    [w.state.answer for w in health] if moved else None,
                    fetched,
                )
            now = time.monotonic()
            if now >= deadline and all(
                w.state.answers > answered[n] for n, w in self._watches.items()
            ):
                return None
            self._cond.wait(max(0.01, deadline - now) if now < deadline else self.wait_s)
        return None

    def _unambiguous(self, health: list[Watch]) -> bool:
        """Whether the health lists can be applied before the others catch up with the newest.

        Only a check that left every list is ambiguous: recovered, or moved to a list not read
        since. A check that appeared or changed carries its own status, so a failure is never
        held back waiting for the other list (caller holds the lock).
        """
        model = self._model
        answers = [w.state.answer for w in health]
        if model is None or any(a is None for a in answers):
            return False
        try:
            merged = self._merge_health(answers)
        except SourceUnavailable:
            return False  # _apply reports it
        return model.health.keys() <= merged.keys()

    def _paired(self, health: list[Watch]) -> bool:
        """Whether every health list has caught up with the newest (caller holds the lock)."""
        newest = max(w.state.index for w in health)
        if all(w.state.index >= newest for w in health):
            self._pair_since = None
            return True
        now = time.monotonic()
        if self._pair_since is None:
            self._pair_since = now
        if now - self._pair_since >= self.pair_wait_s:
            self._pair_since = None
            return True
        return False

    def _apply(
        self,
        catalog: Answer | None,
        nodes: Answer | None,
        health: list[Answer] | None,
        fetched: dict[str, Answer],
    ) -> CatalogUpdate:
        model = self._model
        assert model is not None and self._reconciler is not None
        observed_at = self.clock()
        touched: set[str] = set()
        removed: set[str] = set()
        urgent: set[str] = set()
        hint = False
        if health is not None:
            with self._cond:
                index, items = self._take_health(health)
            patched, unknown, departed = model.set_health(index, items)
            touched |= patched
            urgent |= unknown | departed
        if catalog is not None:
            listed, missing = model.take_catalog(parse_catalog(catalog.data), catalog.filtered)
            urgent |= listed
            # Filtered out or deregistered? Then only the service's own answer can tell.
            (urgent if catalog.filtered else removed).update(missing)
            hint = not listed and not missing
        if nodes is not None:
            urgent |= model.take_nodes(parse_nodes(nodes.data), nodes.filtered)
        for name, answer in fetched.items():
            self._note_service(name, answer)
            if answer.unchanged:
                continue
            if not answer.data:
                if name in model.services and not answer.filtered:
                    removed.add(name)
                continue
            previous = model.services.get(name)
            service = parse_service(name, answer.index, answer.data, previous, answer.filtered)
            touched |= model.set_service(name, service)
            if service.destination and service.destination not in model.services:
                urgent.add(service.destination)
        for name in removed:
            touched |= model.drop_service(name)
        with self._cond:
            if catalog is not None:
                self._acl.note_read(CATALOG, catalog.filtered)
            if nodes is not None:
                self._acl.note_read(NODES, nodes.filtered)
        self._reconciler.urgent(urgent - removed)
        if hint:
            self._reconciler.sweep()
        return CatalogUpdate(
            observed_at=observed_at,
            services=model.changed_records(touched - removed),
            complete=False,
            removed=tuple(sorted(removed)),
        )

    # -- warnings ---------------------------------------------------------------------------

    def warnings(self) -> list[SourceWarning]:
        """What the Sources page should say besides ok/stale/error: ACL filtering, churn."""
        with self._cond:
            found = self._acl.warnings()
            for name in (*self._health_states, "catalog", "nodes"):
                watch = self._watches.get(name)
                warning = watch.warning() if watch is not None else None
                if warning is not None:
                    found.append(warning)
        return found

    # -- watches ----------------------------------------------------------------------------

    def _start_watches(self) -> None:
        """Long-poll from the indexes of the last full pass, so no change in between is lost."""
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._threads = [t for t in self._threads if t.is_alive()]

            def alive() -> bool:
                return generation == self._generation and not self._stop.is_set()

            specs = (
                *(
                    (
                        state,
                        self._health_reader(state),
                        HEALTH_CHURN_INTERVAL_S,
                        HEALTH_CHURN_ENTER_MOVES,
                        f"GET {path}",
                    )
                    for state in self._health_states
                    for path in [f"{HEALTH_STATE}{state}"]
                ),
                (
                    "catalog",
                    self._reader.catalog_services,
                    HINT_CHURN_INTERVAL_S,
                    CHURN_ENTER_MOVES,
                    f"GET {CATALOG}",
                ),
                (
                    "nodes",
                    self._reader.catalog_nodes,
                    HINT_CHURN_INTERVAL_S,
                    CHURN_ENTER_MOVES,
                    f"GET {NODES}",
                ),
            )
            self._watches = {
                name: Watch(
                    name,
                    read,
                    index=self._start_answers[name].index,
                    answer=self._start_answers[name],
                    wait_s=self.wait_s,
                    churn_interval_s=interval,
                    churn_enter_moves=enter_moves,
                    cond=self._cond,
                    stop=self._stop,
                    alive=alive,
                    describe=describe,
                )
                for name, read, interval, enter_moves, describe in specs
            }
            self._reconciler = Reconciler(
                self._fetch_many,
                names=self._catalog_names,
                deliver=lambda result, g=generation: self._deliver(result, g),
                stop=self._stop,
                alive=alive,
                thread_name=f"{self.name}-watch-reconciler",
                sweep_every_s=self.sweep_every_s,
                rate_per_s=self.sweep_rate_per_s,
                min_sweep_interval_s=self.min_sweep_interval_s,
                swept_for_s=self._full_pass_s,
            )
        for name, watch in self._watches.items():
            watch.start(f"{self.name}-watch-{name}", self._reader.close_thread_client)
            self._threads.append(watch.thread)
        self._reconciler.start(self._reader.close_thread_client)
        self._threads.append(self._reconciler.thread)

    def _note_service(self, name: str, answer: Answer) -> None:
        with self._cond:
            self._acl.note_service(name, answer)

    def _catalog_names(self) -> list[str]:
        model = self._model
        return sorted(model.catalog) if model is not None else []

    def _deliver(self, result: dict[str, Answer] | SourceUnavailable, generation: int) -> None:
        """Take the reconciler's answers (or its error) for the next pass."""
        with self._cond:
            if generation != self._generation:
                return
            if isinstance(result, SourceUnavailable):
                self._reconcile_error = result
            else:
                self._fetched.update(result)
            self._cond.notify_all()

    @property
    def reconciling(self) -> bool:
        """Whether the reconciler has work queued or under way."""
        reconciler = self._reconciler
        return reconciler is not None and reconciler.busy

    def resync(self) -> None:
        """Start over with a full pass: what the last pass returned was not stored."""
        with self._cond:
            self._reset()

    def _reset(self) -> None:
        """Forget the watches and the model (call with the lock held)."""
        self._generation += 1
        self._last_model = self._model or self._last_model
        self._model = None
        self._watches = {}
        if self._reconciler is not None:
            self._reconciler.wake()
        self._reconciler = None
        self._fetched = {}
        self._reconcile_error = None
        self._threads = [t for t in self._threads if t.is_alive()]

    def close(self, timeout: float = 0.0) -> None:
        """Stop the watches, wake a waiting collect() and close idle connections.

        A watch ends when its long poll returns (at most `wait_s` and Consul's jitter, or at
        once if Consul drops the connection); wait up to `timeout` seconds for that.
        """
        self._stop.set()
        with self._cond:
            self._generation += 1
            reconciler = self._reconciler
            self._cond.notify_all()
        if reconciler is not None:
            reconciler.wake()
        self._reader.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def watching(self) -> bool:
        """Whether a watch or the reconciler is still running."""
        return any(t.is_alive() for t in self._threads)
