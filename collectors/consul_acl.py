"""What ACL filtering hid from the Consul collector, as warnings that name the missing permission.

Consul >= 1.13 answers a token that may not read everything with `200`, the results it may see,
and `X-Consul-Results-Filtered-By-ACLs: true`; only an unknown token gets `403 ACL not found`.
"""

from __future__ import annotations

from collectors.base import SourceWarning
from collectors.consul_api import Answer

SHOWN_NAMES = 10
SERVICE_READ = "GET /v1/health/service/<name>"

# The watched reads: the permission each needs, and what the token then does not see.
WATCHED_READS = {
    "/v1/catalog/services": ("service:read", "services it cannot read are not listed"),
    "/v1/catalog/nodes": ("node:read", "nodes it cannot read are not listed"),
    "/v1/health/state/any": (
        "node:read and service:read",
        "checks of nodes and services it cannot read are not listed",
    ),
}


class AclFilters:
    """Which reads ACLs filtered lately; each clears when the same read answers unfiltered."""

    def __init__(self) -> None:
        self._reads: set[str] = set()
        self._services: dict[str, str] = {}

    def note_read(self, path: str, filtered: bool) -> None:
        """Remember whether ACLs filtered a watched read."""
        if filtered:
            self._reads.add(path)
        else:
            self._reads.discard(path)

    def note_service(self, name: str, answer: Answer) -> None:
        """Remember whether ACLs filtered a service's health entries, and how much."""
        if not answer.filtered:
            self._services.pop(name, None)
        else:
            # Nothing left: the service itself is hidden; some entries left: some nodes are.
            self._services[name] = "node:read" if answer.data else "service:read"

    def warnings(self) -> list[SourceWarning]:
        """One warning per filtered watched read, and one per permission for services."""
        found = []
        for path in sorted(self._reads):
            permission, hidden = WATCHED_READS[path]
            found.append(
                SourceWarning(
                    kind="acl_filtered",
                    read=f"GET {path}",
                    permission=permission,
                    message=(
                        f"Consul filtered GET {path} by ACLs: the token lacks {permission} on "
                        f"some of them, so {hidden}; nothing is marked gone because of it"
                    ),
                )
            )
        by_permission: dict[str, list[str]] = {}
        for name, permission in sorted(self._services.items()):
            by_permission.setdefault(permission, []).append(name)
        for permission, names in sorted(by_permission.items()):
            shown = ", ".join(names[:SHOWN_NAMES])
            if len(names) > SHOWN_NAMES:
                shown += f" and {len(names) - SHOWN_NAMES} more"
            hidden = (
                "the service is hidden entirely"
                if permission == "service:read"
                else "its instances on nodes the token cannot read are hidden"
            )
            found.append(
                SourceWarning(
                    kind="acl_filtered",
                    read=SERVICE_READ,
                    permission=permission,
                    message=(
                        f"Consul filtered {SERVICE_READ} by ACLs for {len(names)} "
                        f"service(s) ({shown}): the token lacks {permission} there, so {hidden}; "
                        "nothing is marked gone because of it"
                    ),
                )
            )
        return found
