"""The `static_services` source: a fleet listed in the configuration file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from collectors.base import CatalogUpdate, InstanceRecord, ServiceRecord


@dataclass(frozen=True)
class StaticService:
    """One service and its `host:port` instances as written in the config."""

    name: str
    instances: tuple[str, ...]
    tags: tuple[str, ...] = ()


class StaticCollector:
    """Report the configured services; their health is unknown, since nothing checks them."""

    kind = "static"

    def __init__(
        self, services: Sequence[StaticService], clock: Callable[[], datetime], name: str = "static"
    ) -> None:
        self.name = name
        self.services = tuple(services)
        self.clock = clock

    def collect(self) -> list[CatalogUpdate]:
        """Return every configured service as one complete catalog update."""
        records = [
            ServiceRecord(
                name=svc.name,
                tags=svc.tags,
                instances=tuple(_instance_record(address, svc.tags) for address in svc.instances),
            )
            for svc in self.services
        ]
        return [CatalogUpdate(observed_at=self.clock(), services=records, complete=True)]


def _instance_record(address: str, tags: tuple[str, ...]) -> InstanceRecord:
    host, _, port = address.rpartition(":")
    version = next((t.split("=", 1)[1] for t in tags if t.startswith("version=")), None)
    return InstanceRecord(
        id=address, address=host, port=int(port), tags=tags, version=version, checked=False
    )
