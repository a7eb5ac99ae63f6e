"""DESIGN §5 `GET /api/v1/map`: the graph of the window, narrowed, grouped and diffed.

The parts: app/queries/map_graph.py gathers nodes, edges, evidence, drift and health;
app/queries/map_layout.py focuses, keeps only the unhealthy, and groups past the node limit;
app/queries/map_diff.py compares with an earlier window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.queries.map_diff import diff_graphs
from app.queries.map_graph import (
    Graph,
    add_tags,
    build_graph,
    focus_scope,
    merge_health,
    window_json,
)
from app.queries.map_layout import (
    apply_groups,
    focus,
    group_key_function,
    only_unhealthy,
    plan_groups,
)
from app.queries.sources import iso
from app.queries.span_red import covered_until
from app.queries.verdict import VerdictRules
from collectors.prometheus_edges import EdgeReading

DEFAULT_NODE_LIMIT = 300


class UnknownService(LookupError):
    """The focused service is on no source's map."""


@dataclass(frozen=True)
class MapRequest:
    """What the caller asked to see (already validated)."""

    start: datetime
    end: datetime
    service: str | None = None
    hops: int = 1
    unhealthy: bool = False
    # The earlier window to diff with (same length), or None.
    compare_start: datetime | None = None
    compare_end: datetime | None = None
    node_limit: int = DEFAULT_NODE_LIMIT
    group_by: str = "prefix"


def map_json(
    db: Session,
    asked: MapRequest,
    rules: VerdictRules,
    prometheus_edges: Iterable[EdgeReading] = (),
    previous_prometheus_edges: Iterable[EdgeReading] = (),
    notes: Iterable[str] = (),
) -> dict:
    """Render the map the request asks for (raises UnknownService for an unknown focus)."""
    prometheus_edges = list(prometheus_edges)
    only, totals = None, None
    if asked.service is not None and asked.compare_start is None:
        # A focus reads in full only what is within its hops (a diff needs the whole fleet).
        only, totals = focus_scope(
            db, asked.start, asked.end, prometheus_edges, asked.service, asked.hops
        )
        if only is None:
            raise UnknownService(asked.service)
    graph = build_graph(
        db,
        asked.start,
        asked.end,
        prometheus_edges,
        grouping=_grouping_reads(asked.group_by),
        only=only,
    )
    graph.notes.extend(notes)
    summary = None
    compared = None
    if asked.compare_start is not None and asked.compare_end is not None:
        previous = build_graph(
            db,
            asked.compare_start,
            asked.compare_end,
            previous_prometheus_edges,
            current=False,
        )
        summary = diff_graphs(graph, previous)
        compared = window_json(previous.start, previous.end)
    totals = totals or {"nodes": len(graph.nodes), "edges": len(graph.edges)}
    if asked.service is not None:
        if asked.service not in graph.nodes:
            raise UnknownService(asked.service)
        graph = focus(graph, asked.service, asked.hops)
    merge_health(db, graph, rules)
    if asked.unhealthy:
        graph = only_unhealthy(graph)
    groups: list[dict] = []
    truncated = len(graph.nodes) > asked.node_limit
    if truncated:
        grouping = plan_groups(
            graph.nodes,
            asked.node_limit,
            group_key_function(asked.group_by),
            [asked.service] if asked.service else [],
        )
        graph = apply_groups(graph, grouping, asked.group_by)
        groups = [
            {"id": gid, "members": len(members)} for gid, members in sorted(grouping.groups.items())
        ]
    add_tags(db, graph.nodes.values())
    body = {
        "nodes": [n.to_json() for n in sorted(graph.nodes.values(), key=lambda n: n.id)],
        "edges": [e.to_json() for _, e in sorted(graph.edges.items())],
        "window": window_json(graph.start, graph.end),
        "traces_until": iso(covered_until(db)),
        "focus": {"service": asked.service, "hops": asked.hops} if asked.service else None,
        "unhealthy_only": asked.unhealthy,
        "truncated": truncated,
        "groups": groups,
        "group_by": asked.group_by if truncated else None,
        "node_limit": asked.node_limit,
        "totals": totals,
        "notes": list(graph.notes),
    }
    if summary is not None:
        body["diff"] = {
            "window": compared,
            **summary,
        }
    return body


def _grouping_reads(group_by: str) -> str:
    """Name the catalog column the grouping rule reads: "tags", "meta" or none."""
    return {"tag": "tags", "meta": "meta"}.get(group_by.partition(":")[0], "")


__all__ = ["Graph", "MapRequest", "UnknownService", "map_json"]
