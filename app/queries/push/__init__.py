"""Push connections: who holds how many, from which source, imbalance and drain progress.

Pure functions over plain inputs (what the balancer store and the Prometheus gauge hold);
`app.queries.push.reading` reads those inputs from the store. DESIGN §5 `/api/v1/push/connections`.

The count of an instance comes from a HAProxy balancer's `scur` when one fronts it, else from
the Prometheus gauge (`push_connections_active{service,instance}`); a fresh source wins over a
stale one. nginx OSS reports only a total of its client connections (stub_status), never per
server, so its numbers are shown per balancer. A number from a stale source keeps its last
value and is marked stale: it never turns into a zero.
"""

from app.queries.push.counts import (
    IMBALANCE_FACTOR,
    Imbalance,
    InstanceCount,
    PushConnections,
    ServiceCount,
    count_connections,
    find_imbalance,
)
from app.queries.push.drains import DrainProgress, drain_progress
from app.queries.push.inputs import (
    NGINX_NOTE,
    BalancerTotal,
    CatalogMember,
    GaugeCount,
    MemberCount,
)

__all__ = [
    "IMBALANCE_FACTOR",
    "NGINX_NOTE",
    "BalancerTotal",
    "CatalogMember",
    "DrainProgress",
    "GaugeCount",
    "Imbalance",
    "InstanceCount",
    "MemberCount",
    "PushConnections",
    "ServiceCount",
    "count_connections",
    "drain_progress",
    "find_imbalance",
]
