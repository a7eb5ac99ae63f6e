"""What the Consul collector knows: each service as last fetched, and the latest health list.

A service's record is built from its last `/v1/health/service/<name>` answer (index X) with the
latest health list (index Y) laid over it when Y >= X: both are Raft indexes, so a list at
least as new as the service's last change is the fresher view of its checks. A check change
then patches the records of the services it touches without fetching them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from collectors.base import CheckRecord, InstanceRecord, ServiceRecord, SourceUnavailable
from collectors.consul_records import check_kind, parse_instance, service_meta, upstream_names

# Which checks the health watch reads: only the non-passing ones (small in a healthy fleet;
# absent means passing), or all of them (absent means deregistered).
NON_PASSING, ANY = "non-passing", "any"

CheckKey = tuple[str, str]  # (node, check id)


@dataclass(frozen=True)
class HealthItem:
    """One check of a `/v1/health/state` answer."""

    node: str
    check_id: str
    name: str
    status: str
    output: str
    notes: str
    service_id: str
    service_name: str

    def record(self, kind: str | None = None) -> CheckRecord:
        """The check as a record."""
        return CheckRecord(
            check_id=self.check_id,
            name=self.name or self.check_id,
            status=self.status,
            output=self.output,
            notes=self.notes,
            kind=kind or check_kind(self.check_id, self.service_id),
        )


def parse_catalog(data: Any) -> dict[str, list[str]]:
    """Parse a `/v1/catalog/services` answer (already checked to map names to lists)."""
    return {str(k): [str(t) for t in v] for k, v in data.items()}


def parse_nodes(data: Any) -> dict[str, tuple[str, dict]]:
    """Parse a `/v1/catalog/nodes` answer: node -> (address, meta)."""
    nodes = {}
    for item in data:
        try:
            nodes[str(item["Node"])] = (
                str(item.get("Address") or ""),
                dict(item.get("Meta") or {}),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SourceUnavailable(
                f"Consul sent a node without {exc} in /v1/catalog/nodes"
            ) from exc
    return nodes


def parse_health(data: Any, what: str) -> dict[CheckKey, HealthItem]:
    """Parse a `/v1/health/state/<state>` answer."""
    if not isinstance(data, list):
        raise SourceUnavailable(f"Consul sent an unexpected {what} answer")
    items: dict[CheckKey, HealthItem] = {}
    for raw in data:
        try:
            item = HealthItem(
                node=str(raw["Node"]),
                check_id=str(raw["CheckID"]),
                name=str(raw.get("Name") or ""),
                status=str(raw["Status"]),
                output=str(raw.get("Output") or ""),
                notes=str(raw.get("Notes") or ""),
                service_id=str(raw.get("ServiceID") or ""),
                service_name=str(raw.get("ServiceName") or ""),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise SourceUnavailable(f"Consul sent a check without {exc} in {what}") from exc
        items[(item.node, item.check_id)] = item
    return items


@dataclass(frozen=True)
class FetchedService:
    """One service as its last `/v1/health/service/<name>` answer showed it."""

    index: int
    instances: tuple[InstanceRecord, ...]
    kind: str = ""
    destination: str = ""  # the service a connect-proxy fronts
    upstreams: frozenset[str] = frozenset()
    filtered: bool = False


def parse_service(
    name: str, index: int, entries: Any, previous: FetchedService | None, filtered: bool
) -> FetchedService:
    """Parse a service's health entries.

    When ACLs filtered the answer, instances it no longer lists may only be hidden: keep them.
    """
    if not isinstance(entries, list):
        raise SourceUnavailable(f"Consul sent an unexpected answer for service {name!r}")
    instances: list[InstanceRecord] = []
    kind, destination, upstreams = "", "", set()
    for item in entries:
        instance, service = parse_instance(name, item)
        instances.append(instance)
        kind = service.get("Kind") or kind
        if service.get("Kind") == "connect-proxy":
            proxy = service.get("Proxy") or {}
            destination = str(proxy.get("DestinationServiceName") or "") or destination
            upstreams |= upstream_names(proxy)
    if filtered and previous is not None:
        seen = {(i.node, i.id) for i in instances}
        instances.extend(i for i in previous.instances if (i.node, i.id) not in seen)
    return FetchedService(
        index=index,
        instances=tuple(instances),
        kind=kind,
        destination=destination,
        upstreams=frozenset(upstreams),
        filtered=filtered,
    )


@dataclass
class CatalogModel:
    """The services and checks the collector has seen, and the records it last returned."""

    mode: str = NON_PASSING
    services: dict[str, FetchedService] = field(default_factory=dict)
    health: dict[CheckKey, HealthItem] = field(default_factory=dict)
    health_index: int = 0
    catalog: dict[str, list[str]] = field(default_factory=dict)
    nodes: dict[str, tuple[str, dict]] = field(default_factory=dict)
    emitted: dict[str, ServiceRecord] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    node_services: dict[str, set[str]] = field(default_factory=dict)
    proxies_of: dict[str, set[str]] = field(default_factory=dict)
    # Health items by instance (node, service id), and node checks by node.
    _by_instance: dict[tuple[str, str], list[HealthItem]] = field(default_factory=dict)
    _by_node: dict[str, list[HealthItem]] = field(default_factory=dict)

    # -- services ---------------------------------------------------------------------------

    def known_index(self, name: str) -> int | None:
        """The index of a service's last answer, or None when it was never fetched."""
        fetched = self.services.get(name)
        return fetched.index if fetched is not None else None

    def set_service(self, name: str, fetched: FetchedService) -> set[str]:
        """Remember a service's new answer; return the services whose records it touches."""
        touched = {name} | self._forget(name)
        self.services[name] = fetched
        for instance in fetched.instances:
            self.owners[(instance.node, instance.id)] = name
            self.node_services.setdefault(instance.node, set()).add(name)
        if fetched.destination:
            self.proxies_of.setdefault(fetched.destination, set()).add(name)
            touched.add(fetched.destination)
        return {n for n in touched if n in self.services}

    def drop_service(self, name: str) -> set[str]:
        """Forget a service that left; return the services whose records it touches."""
        touched = self._forget(name)
        self.services.pop(name, None)
        self.emitted.pop(name, None)
        self.catalog = {n: tags for n, tags in self.catalog.items() if n != name}
        return {n for n in touched if n in self.services}

    def _forget(self, name: str) -> set[str]:
        previous = self.services.get(name)
        if previous is None:
            return set()
        for instance in previous.instances:
            if self.owners.get((instance.node, instance.id)) == name:
                del self.owners[(instance.node, instance.id)]
            on_node = self.node_services.get(instance.node)
            if on_node is not None:
                on_node.discard(name)
        if previous.destination:
            self.proxies_of.get(previous.destination, set()).discard(name)
            return {previous.destination}
        return set()

    def take_catalog(
        self, catalog: dict[str, list[str]], filtered: bool
    ) -> tuple[set[str], set[str]]:
        """Take a new `/v1/catalog/services`; return names new or retagged, and names missing.

        Names missing from a filtered answer stay listed until their own answer tells.
        """
        old = self.catalog
        listed = {
            n for n, tags in catalog.items() if n not in old or sorted(old[n]) != sorted(tags)
        }
        missing = set(old) - set(catalog)
        if filtered:
            catalog = {**{n: old[n] for n in missing}, **catalog}
        # One assignment: the reconciler lists these names from another thread.
        self.catalog = catalog
        return listed, missing

    def take_nodes(self, nodes: dict[str, tuple[str, dict]], filtered: bool) -> set[str]:
        """Take a new `/v1/catalog/nodes`; return the services on nodes that changed or left."""
        stale: set[str] = set()
        for node, seen in self.nodes.items():
            if nodes.get(node) != seen and (node in nodes or not filtered):
                stale |= self.node_services.get(node, set())
        self.nodes = {**self.nodes, **nodes} if filtered else nodes
        return stale

    # -- health -----------------------------------------------------------------------------

    def set_health(
        self, index: int, items: dict[CheckKey, HealthItem]
    ) -> tuple[set[str], set[str], set[str]]:
        """Take a new health list.

        Return the services whose records it touches, the services of checks it names that
        the model has no instance for (to fetch), and the services whose checks left the list
        (to fetch: left could mean recovered or deregistered, and the new output is unknown).
        """
        old, old_index = self.health, self.health_index
        touched: set[str] = set()
        unknown: set[str] = set()
        departed: set[str] = set()
        for key in old.keys() | items.keys():
            before, after = old.get(key), items.get(key)
            if before == after:
                continue
            item = after or before
            assert item is not None
            owners = self._owners_of(item)
            if item.service_id and not owners:
                if item.service_name:
                    unknown.add(item.service_name)
                continue
            touched |= owners
            if after is None:
                departed |= owners if item.service_id else set()
        self.health, self.health_index = items, index
        self._by_instance, self._by_node = {}, {}
        for item in items.values():
            if item.service_id:
                self._by_instance.setdefault((item.node, item.service_id), []).append(item)
            else:
                self._by_node.setdefault(item.node, []).append(item)
        # Services fetched after the old list but not after the new one switch to the overlay.
        touched |= {name for name, f in self.services.items() if old_index < f.index <= index}
        return touched, unknown, departed

    def _owners_of(self, item: HealthItem) -> set[str]:
        if item.service_id:
            owner = self.owners.get((item.node, item.service_id))
            return {owner} if owner else set()
        return set(self.node_services.get(item.node, set()))

    # -- records ----------------------------------------------------------------------------

    def record(self, name: str) -> ServiceRecord:
        """The service as Quarterdeck records it."""
        fetched = self.services[name]
        overlay = self.health_index >= fetched.index
        instances = tuple(self._instance(i) if overlay else i for i in fetched.instances)
        upstreams: set[str] = set()
        for proxy in self.proxies_of.get(name, set()):
            if proxy in self.services:
                upstreams |= self.services[proxy].upstreams
        meta = service_meta(list(instances))
        if fetched.destination:
            meta = {**meta, "connect_destination": fetched.destination}
        return ServiceRecord(
            name=name,
            tags=tuple(sorted({t for i in instances for t in i.tags})),
            meta=meta,
            kind=fetched.kind,
            instances=instances,
            upstreams=tuple(sorted(upstreams)),
        )

    def _instance(self, instance: InstanceRecord) -> InstanceRecord:
        """The instance with the health list's view of its checks."""
        listed = {
            item.check_id: item
            for item in (
                *self._by_node.get(instance.node, ()),
                *self._by_instance.get((instance.node, instance.id), ()),
            )
        }
        checks: list[CheckRecord] = []
        for check in instance.checks:
            item = listed.pop(check.check_id, None)
            if item is not None:
                checks.append(item.record(check.kind))
            elif self.mode == ANY or check.kind == "maintenance":
                continue  # deregistered (a maintenance check is always critical when there)
            elif check.status == "passing":
                checks.append(check)
            else:  # recovered: its new output comes with the next fetch of the service
                checks.append(replace(check, status="passing", output=""))
        checks.extend(item.record() for _, item in sorted(listed.items()))
        if tuple(checks) == instance.checks:
            return instance
        return replace(instance, checks=tuple(checks))

    def changed_records(self, names: set[str]) -> list[ServiceRecord]:
        """Build the records of `names` and return those that differ from the last returned."""
        changed = []
        for name in sorted(names):
            if name not in self.services:
                continue
            record = self.record(name)
            if self.emitted.get(name) != record:
                self.emitted[name] = record
                changed.append(record)
        return changed
