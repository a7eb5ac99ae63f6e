"""What every collector is: a named reader of one source that returns typed records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

HEALTH_STATES = ("passing", "warning", "critical")


class SourceUnavailable(Exception):  # noqa: N818 (the name DESIGN and STYLE give it)
    """The source could not be read; the reason says why.

    `config_error` marks a problem only the operator can fix (for example an ACL that
    denies the token), as opposed to an outage that may pass by itself.
    """

    def __init__(self, reason: str, *, config_error: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.config_error = config_error


@dataclass(frozen=True)
class SourceWarning:
    """Something the operator should know about a source that still answers.

    `kind` is e.g. "acl_filtered" or "churn"; `read` names the request it concerns and
    `permission` the ACL permission that would lift it, when there is one.
    """

    kind: str
    message: str
    read: str = ""
    permission: str = ""

    def to_json(self) -> dict[str, str]:
        """Render as an entry of `sources[].warnings`."""
        return {
            "kind": self.kind,
            "message": self.message,
            "read": self.read,
            "permission": self.permission,
        }


@dataclass(frozen=True)
class CheckRecord:
    """One health check as the source reports it."""

    check_id: str
    name: str
    status: str
    output: str = ""
    notes: str = ""
    kind: str = "service"  # service | node | maintenance


@dataclass(frozen=True)
class InstanceRecord:
    """One instance of a service; `id` is the source's own id, unique per node."""

    id: str
    node: str = ""
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    checks: tuple[CheckRecord, ...] = ()
    # The meta of the node it runs on (Consul Node.Meta: zone, rack, OS ...).
    node_meta: dict[str, str] = field(default_factory=dict)
    # False when the source has no health checks for it (health stays "unknown").
    checked: bool = True


@dataclass(frozen=True)
class ServiceRecord:
    """A service with its instances and declared upstream dependencies."""

    name: str
    tags: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    instances: tuple[InstanceRecord, ...] = ()
    upstreams: tuple[str, ...] = ()


@dataclass(frozen=True)
class CatalogUpdate:
    """Services seen by one source at one moment.

    With `complete`, the update lists every service the source has, so any other service of
    that source is gone. Otherwise it lists only the services that changed, and `removed`
    names the ones that left.
    """

    observed_at: datetime
    services: Sequence[ServiceRecord]
    complete: bool = True
    removed: tuple[str, ...] = ()


@runtime_checkable
class Collector(Protocol):
    """A reader of one source."""

    name: str
    kind: str

    def collect(self) -> list[CatalogUpdate]:
        """Read the source once and return what it holds; raise SourceUnavailable."""
        ...


# A collector that returns only what changed also offers `resync()`: the runner calls it
# when what `collect()` returned could not be stored, so the next pass is a full one.
# One that can warn offers `warnings()`: the runner stores them with the source's status.
# One that must confirm what it read once it is stored offers `committed()`: the runner calls
# it after the pass's rows are committed (collectors/redis_idem.py acknowledges its stream).
