"""Read dependency edges from Prometheus: the `[map] edge_query`, one series per edge.

The query is the operator's (e.g. from client metrics: `sum by (job, server_address)
(rate(http_client_request_duration_seconds_count[5m]))` relabelled to source/target, or a
service mesh's request counter); each series names its edge with two labels and its value is
the edge's rate in requests per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collectors.prometheus import PrometheusReader


@dataclass(frozen=True)
class EdgeReading:
    """One edge Prometheus measured: caller, callee and rate (None when NaN or absent)."""

    source: str
    target: str
    rate_rps: float | None
    evidence: str = "prometheus"


def read_edges(
    reader: PrometheusReader,
    query: str,
    source_label: str,
    target_label: str,
    at: datetime | None = None,
) -> list[EdgeReading]:
    """Run the edge query (now, or at `at`); series missing either label are skipped."""
    edges: dict[tuple[str, str], EdgeReading] = {}
    for labels, value in reader.instant("the map edge query", query, at):
        source, target = labels.get(source_label), labels.get(target_label)
        if not source or not target or source == target:
            continue
        held = edges.get((source, target))
        if held is not None and held.rate_rps is not None and value is not None:
            value += held.rate_rps  # several series for one edge (e.g. per route): add them
        edges[(source, target)] = EdgeReading(source, target, value)
    return list(edges.values())
