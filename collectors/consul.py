"""Consul: the service catalog and instance health, watched with blocking queries.

Two long polls run in background threads: `/v1/catalog/services` (registrations) and
`/v1/health/state/any` (every check in the datacenter). When either returns a new index, the
collector works out which services changed and fetches only those with
`/v1/health/service/<name>`. A quiet datacenter costs two idle HTTP requests per `wait_s`.

The client is py-consul, the maintained successor of python-consul (unmaintained since 2018);
it installs the same `consul` import, so never install both.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import consul
import requests

from collectors.base import (
    CatalogUpdate,
    InstanceRecord,
    ServiceRecord,
    SourceUnavailable,
)
from collectors.consul_records import (
    parse_instance,
    proxy_destinations,
    service_meta,
    upstream_names,
)

FETCH_WORKERS = 8
# Consul: a blocking query may return early without a change; never loop faster than this.
MIN_POLL_INTERVAL_S = 0.05
REGISTRATION_GRACE_S = 0.2


@dataclass
class _Watch:
    """The state of one long poll: its index, its latest result, its error."""

    name: str
    index: int = 0
    data: Any = None
    error: SourceUnavailable | None = None
    changed: bool = False
    answers: int = 0


@dataclass
class _Snapshot:
    """What the collector last saw, to tell which services a new index touched."""

    catalog: dict[str, list[str]] = field(default_factory=dict)
    checks: dict[tuple[str, str], tuple] = field(default_factory=dict)
    catalog_index: int = 0
    checks_index: int = 0
    node_services: dict[str, set[str]] = field(default_factory=dict)
    proxies_of: dict[str, set[str]] = field(default_factory=dict)
    destination_of: dict[str, str] = field(default_factory=dict)


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
    ) -> None:
        parts = urlsplit(url)
        self.name = name
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 8500)
        self._scheme = parts.scheme or "http"
        # Shown in errors on pages and in logs: never with credentials from the URL.
        self.url = f"{self._scheme}://{self._host}:{self._port}"
        self._token = token or None
        self._dc = datacenter or None
        self._verify = verify
        self.wait_s = max(1, wait_s)
        self.clock = clock
        # A healthy watch reports at least once per wait (plus Consul's jitter of wait/16).
        self.stale_after_s = self.wait_s * 1.25 + 15
        self._local = threading.local()
        self._clients: set[consul.Consul] = set()
        self._clients_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watches: dict[str, _Watch] = {}
        self._threads: list[threading.Thread] = []
        self._snapshot: _Snapshot | None = None
        self._generation = 0

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

    # -- client -----------------------------------------------------------------------------

    def _client(self) -> consul.Consul:
        """This thread's client: requests sessions are not safe to share between threads."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = consul.Consul(
                host=self._host,
                port=self._port,
                scheme=self._scheme,
                dc=self._dc,
                verify=self._verify,
            )
            # py-consul lets CONSUL_HTTP_TOKEN override the token argument; the config wins.
            client.token = self._token
            self._local.client = client
            with self._clients_lock:
                self._clients.add(client)
        return client

    def _close_thread_client(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            self._local.client = None
            with self._clients_lock:
                self._clients.discard(client)
            client.http.session.close()

    def _call(self, what: str, fn: Callable[[consul.Consul], Any]) -> Any:
        """Run one request, turning every way it can fail into SourceUnavailable."""
        try:
            return fn(self._client())
        except consul.ACLPermissionDenied as exc:
            raise SourceUnavailable(
                f"Consul denied {what} (HTTP 403): check the ACL token's policy ({_short(exc)})",
                config_error=True,
            ) from exc
        except consul.ACLDisabled as exc:
            raise SourceUnavailable(
                f"Consul refused {what} (HTTP 401): {_short(exc)}", config_error=True
            ) from exc
        except requests.exceptions.SSLError as exc:
            raise SourceUnavailable(
                f"TLS error talking to Consul at {self.url}: {_short(exc)}", config_error=True
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(
                f"cannot reach Consul at {self.url}: {type(exc).__name__}"
            ) from exc
        except consul.ConsulException as exc:
            if isinstance(exc.__cause__, (ValueError, TypeError, KeyError)):
                # py-consul wraps a body it cannot decode in a ConsulException.
                raise SourceUnavailable(
                    f"Consul sent a malformed answer to {what}: {exc.__cause__}"
                ) from exc
            raise SourceUnavailable(f"Consul error on {what}: {_short(exc)}") from exc
        except ValueError as exc:  # json.JSONDecodeError and bad index headers
            raise SourceUnavailable(f"Consul sent a malformed answer to {what}: {exc}") from exc

    def _fetch_catalog(self, index: int = 0, wait: str | None = None):
        index_s, data = self._call(
            "GET /v1/catalog/services",
            lambda c: c.catalog.services(index=index or None, wait=wait),
        )
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise SourceUnavailable("Consul sent an unexpected /v1/catalog/services answer")
        return _index(index_s), {str(k): [str(t) for t in v] for k, v in data.items()}

    def _fetch_checks(self, index: int = 0, wait: str | None = None):
        index_s, data = self._call(
            "GET /v1/health/state/any",
            lambda c: c.health.state("any", index=index or None, wait=wait),
        )
        if not isinstance(data, list):
            raise SourceUnavailable("Consul sent an unexpected /v1/health/state/any answer")
        checks = {}
        for item in data:
            try:
                checks[(item["Node"], item["CheckID"])] = (
                    item["Status"],
                    item.get("Output") or "",
                    item.get("ServiceName") or "",
                    item.get("Notes") or "",
                )
            except (KeyError, TypeError) as exc:
                raise SourceUnavailable(
                    f"Consul sent a check without {exc} in /v1/health/state/any"
                ) from exc
        return _index(index_s), checks

    def _fetch_service(self, name: str) -> tuple[str, list[dict] | None]:
        _index_s, entries = self._call(
            f"GET /v1/health/service/{name}", lambda c: c.health.service(name)
        )
        if entries is not None and not isinstance(entries, list):
            raise SourceUnavailable(f"Consul sent an unexpected answer for service {name!r}")
        return name, entries

    # -- collection -------------------------------------------------------------------------

    def collect(self) -> list[CatalogUpdate]:
        """Return a full catalog on the first call, then block until something changes.

        A later call returns `[]` once both watches have answered without a change (about
        `wait_s`), so a success means Consul was heard from just now.
        """
        try:
            if self._snapshot is None:
                return [self._full_pass()]
            changed = self._wait_for_change()
            if changed is None:
                return []
            try:
                return [self._incremental_pass(*changed)]
            except Exception:
                # The snapshot may already hold what was not written: start over.
                with self._cond:
                    self._reset()
                raise
        finally:
            if self._stop.is_set():
                self._close_thread_client()

    def _wait_for_change(self) -> tuple[dict | None, dict | None] | None:
        """Block until a watch sees a new index (its data), or both answer unchanged (None)."""
        if self._stop.is_set():
            return None
        if not self._watches:
            self._start_watches()
        with self._cond:
            answered = {name: w.answers for name, w in self._watches.items()}
            while not self._stop.is_set():
                errors = [w.error for w in self._watches.values() if w.error is not None]
                if errors:
                    # Start over from a full pass once Consul answers again.
                    self._reset()
                    raise errors[0]
                if any(w.changed for w in self._watches.values()):
                    self._await_paired_change()
                    break
                if all(w.answers > answered[n] for n, w in self._watches.items()):
                    return None
                self._cond.wait(self.wait_s)
            else:
                return None
            catalog_watch = self._watches["catalog"]
            checks_watch = self._watches["checks"]
            new_catalog = catalog_watch.data if catalog_watch.changed else None
            new_checks = checks_watch.data if checks_watch.changed else None
            catalog_watch.changed = checks_watch.changed = False
        return new_catalog, new_checks

    def _await_paired_change(self) -> None:
        """Give the checks watch a moment when only the catalog moved (caller holds the lock).

        Registering an instance with checks moves both indexes almost together; reading them
        in one pass names the service, where the catalog alone would mean looking at all.
        """
        catalog, checks = self._watches["catalog"], self._watches["checks"]
        deadline = time.monotonic() + REGISTRATION_GRACE_S
        while catalog.changed and not checks.changed and checks.error is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return
            self._cond.wait(remaining)

    def _full_pass(self) -> CatalogUpdate:
        catalog_index, catalog = self._fetch_catalog()
        checks_index, checks = self._fetch_checks()
        observed_at = self.clock()
        entries = self._fetch_many(sorted(catalog))
        snapshot = _Snapshot(
            catalog=catalog, checks=checks, catalog_index=catalog_index, checks_index=checks_index
        )
        records = self._records({n: e for n, e in entries.items() if e is not None}, snapshot)
        self._snapshot = snapshot
        return CatalogUpdate(observed_at=observed_at, services=records, complete=True)

    def _incremental_pass(self, catalog: dict | None, checks: dict | None) -> CatalogUpdate:
        snapshot = self._snapshot
        assert snapshot is not None
        observed_at = self.clock()
        names: set[str] = set()
        removed: set[str] = set()
        registrations_explained = False
        if checks is not None:
            touched, registered = self._services_touched_by(snapshot, checks)
            names |= touched
            registrations_explained = bool(registered)
            snapshot.checks = checks
        if catalog is not None:
            old = snapshot.catalog
            removed = set(old) - set(catalog)
            listed = {n for n in catalog if n not in old or sorted(old[n]) != sorted(catalog[n])}
            if not listed and not removed and not registrations_explained:
                # A registration changed (an address, a port, a check-less instance) without
                # changing a tag or a check: the index does not say which, so look at all.
                listed = set(catalog)
            names |= listed
            snapshot.catalog = catalog
        # A proxy that left takes its upstreams from the service it fronted.
        names |= {snapshot.destination_of[n] for n in removed if n in snapshot.destination_of}
        self._forget(snapshot, removed)
        entries = self._fetch_many(sorted(self._with_related(snapshot, names)))
        # A new proxy names a destination the snapshot did not know: its upstreams change too.
        destinations = {
            dest
            for items in entries.values()
            for dest in proxy_destinations(items)
            if dest not in entries and dest in snapshot.catalog
        }
        entries.update(self._fetch_many(sorted(destinations)))
        gone_now = {name for name, found in entries.items() if found is None}
        records = self._records({n: e for n, e in entries.items() if e is not None}, snapshot)
        return CatalogUpdate(
            observed_at=observed_at,
            services=records,
            complete=False,
            removed=tuple(sorted(removed | gone_now)),
        )

    def _services_touched_by(self, snapshot: _Snapshot, checks: dict) -> tuple[set[str], set[str]]:
        """Name the services whose checks changed, and those whose checks came or went."""
        names: set[str] = set()
        registered: set[str] = set()
        old = snapshot.checks
        for key in set(old) | set(checks):
            if old.get(key) != checks.get(key):
                node = key[0]
                service = (checks.get(key) or old.get(key))[2]
                if service:
                    names.add(service)
                    if key not in old or key not in checks:
                        registered.add(service)
                else:  # a node check (serfHealth, node maintenance) touches every service there
                    names |= snapshot.node_services.get(node, set())
        return names, registered

    def _with_related(self, snapshot: _Snapshot, names: set[str]) -> set[str]:
        """Add sidecar proxies and the services they front, whose upstreams travel together."""
        related = set(names)
        for name in names:
            related |= snapshot.proxies_of.get(name, set())
            if name in snapshot.destination_of:
                related.add(snapshot.destination_of[name])
        return {n for n in related if n in snapshot.catalog}

    @staticmethod
    def _forget(snapshot: _Snapshot, names: set[str]) -> None:
        for name in names:
            for node_services in snapshot.node_services.values():
                node_services.discard(name)
            destination = snapshot.destination_of.pop(name, None)
            if destination:
                snapshot.proxies_of.get(destination, set()).discard(name)

    def _fetch_many(self, names: list[str]) -> dict[str, list[dict] | None]:
        if len(names) <= 1:
            return dict(self._fetch_service(n) for n in names)
        if self._stop.is_set():
            raise SourceUnavailable("the Consul collector was closed")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=FETCH_WORKERS, thread_name_prefix=f"{self.name}-fetch"
            )
        try:
            return dict(self._pool.map(self._fetch_service, names))
        except CancelledError as exc:  # close() ran while this pass was fetching
            raise SourceUnavailable("the Consul collector was closed") from exc

    def _records(self, entries: dict[str, list[dict]], snapshot: _Snapshot) -> list[ServiceRecord]:
        """Turn health entries into records, and remember nodes and proxies for later diffs."""
        parsed: dict[str, tuple[list[InstanceRecord], dict]] = {}
        for name, items in entries.items():
            instances = []
            info: dict = {"kind": "", "upstreams": set(), "destination": ""}
            for item in items:
                instance, service = parse_instance(name, item)
                instances.append(instance)
                info["kind"] = service.get("Kind") or info["kind"]
                proxy = service.get("Proxy") or {}
                if service.get("Kind") == "connect-proxy":
                    info["destination"] = proxy.get("DestinationServiceName") or ""
                    info["upstreams"] |= upstream_names(proxy)
            parsed[name] = (instances, info)
        for name, (instances, info) in parsed.items():
            self._forget(snapshot, {name})
            for instance in instances:
                snapshot.node_services.setdefault(instance.node, set()).add(name)
            if info["destination"]:
                snapshot.destination_of[name] = info["destination"]
                snapshot.proxies_of.setdefault(info["destination"], set()).add(name)
        records = []
        for name, (instances, info) in parsed.items():
            upstreams: set[str] = set()
            for proxy in snapshot.proxies_of.get(name, set()):
                if proxy in parsed:
                    upstreams |= parsed[proxy][1]["upstreams"]
            meta = service_meta(instances)
            if info["destination"]:
                meta = {**meta, "connect_destination": info["destination"]}
            records.append(
                ServiceRecord(
                    name=name,
                    tags=tuple(sorted({t for i in instances for t in i.tags})),
                    meta=meta,
                    kind=info["kind"],
                    instances=tuple(instances),
                    upstreams=tuple(sorted(upstreams)),
                )
            )
        return records

    # -- watches ----------------------------------------------------------------------------

    def _start_watches(self) -> None:
        """Long-poll from the indexes of the last full pass, so no change in between is lost."""
        snapshot = self._snapshot
        assert snapshot is not None
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._threads = [t for t in self._threads if t.is_alive()]
            self._watches = {
                "catalog": _Watch("catalog", index=snapshot.catalog_index),
                "checks": _Watch("checks", index=snapshot.checks_index),
            }
        for watch, fetch in (
            (self._watches["catalog"], self._fetch_catalog),
            (self._watches["checks"], self._fetch_checks),
        ):
            thread = threading.Thread(
                target=self._run_watch,
                args=(watch, fetch, generation),
                name=f"{self.name}-watch-{watch.name}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def _run_watch(self, watch: _Watch, fetch, generation: int) -> None:
        """Long-poll one endpoint until the collector stops or starts over."""
        try:
            self._poll(watch, fetch, generation)
        finally:
            self._close_thread_client()

    def _poll(self, watch: _Watch, fetch, generation: int) -> None:
        wait = f"{self.wait_s}s"
        while not self._stop.is_set() and generation == self._generation:
            started = time.monotonic()
            try:
                index, data = fetch(watch.index, wait)
            except SourceUnavailable as exc:
                with self._cond:
                    if generation == self._generation:
                        watch.error = exc
                        self._cond.notify_all()
                return
            with self._cond:
                if generation != self._generation:
                    return
                watch.answers += 1
                if index < watch.index:
                    # Consul: an index that goes backwards means start over from 0.
                    watch.index = 0
                elif index != watch.index:
                    # Consul: keep the index at 1 or more (0 would not block).
                    watch.index = max(index, 1)
                    watch.data = data
                    watch.changed = True
                self._cond.notify_all()
            elapsed = time.monotonic() - started
            if elapsed < MIN_POLL_INTERVAL_S:
                self._stop.wait(MIN_POLL_INTERVAL_S - elapsed + random.uniform(0, 0.05))

    def resync(self) -> None:
        """Start over with a full pass: what the last pass returned was not stored."""
        with self._cond:
            self._reset()

    def _reset(self) -> None:
        """Forget the watches and the snapshot (call with the lock held)."""
        self._generation += 1
        self._watches = {}
        self._snapshot = None
        self._threads = [t for t in self._threads if t.is_alive()]

    def close(self, timeout: float = 0.0) -> None:
        """Stop the watches, wake a waiting collect() and close idle connections.

        A watch ends when its long poll returns (at most `wait_s` and Consul's jitter, or at
        once if Consul drops the connection); wait up to `timeout` seconds for that.
        """
        self._stop.set()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            client.http.session.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def watching(self) -> bool:
        """Whether a watch thread is still running."""
        return any(t.is_alive() for t in self._threads)


def _index(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SourceUnavailable(f"Consul sent no usable X-Consul-Index ({value!r})") from exc


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
