"""Narrow the map to what one screen can show: a focus, only the unhealthy, or groups.

Focus and "only unhealthy" are exact subgraphs. Past the node limit the rest is grouped, never
dropped: unhealthy services stay on their own (worst first, up to half the limit), every other
service joins the group of its key (a name prefix, a tag prefix or a meta value), a group
of one stays a plain node, and when there are still too many the smallest groups merge into
one "other" group. Edges between groups are aggregated; the answer says what it grouped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.models.span_red import BUCKET_COLUMNS
from app.queries.map_graph import UNHEALTHY, Graph, MapEdge, MapNode
from app.queries.span_red import SpanRed

GROUP_PREFIX = "group:"
OTHER_GROUP = GROUP_PREFIX + "(other)"
_RANK = {"critical": 0, "warning": 1, "maintenance": 2, "unknown": 3, "passing": 4}
_SEPARATORS = re.compile(r"[-._/:]")


def focus(graph: Graph, service: str, hops: int) -> Graph:
    """Return the service and everything within `hops` calls of it, in either direction."""
    neighbours = graph.neighbours()
    seen = {service}
    frontier = {service}
    for _ in range(hops):
        frontier = {n for f in frontier for n in neighbours.get(f, ())} - seen
        if not frontier:
            break
        seen |= frontier
    return graph.keep(seen)


def only_unhealthy(graph: Graph) -> Graph:
    """Return the unhealthy services and their direct neighbours."""
    neighbours = graph.neighbours()
    bad = {n for n, node in graph.nodes.items() if node.health in UNHEALTHY}
    return graph.keep(bad | {n for b in bad for n in neighbours.get(b, ())})


def group_key_function(group_by: str) -> Callable[[MapNode], str]:
    """Return the function that names a node's group for `[map] group_by` ("" for none).

    "prefix": the name up to its first separator (- . _ / :); "tag:<prefix>": the rest of the
    first tag starting with the prefix (e.g. "tag:team="); "meta:<key>": a meta key's value.
    """
    kind, _, argument = group_by.partition(":")

    def by_tag(node: MapNode) -> str:
        found = (t for t in node.tags if t.startswith(argument) and len(t) > len(argument))
        return next((t[len(argument) :] for t in found), "")

    def by_meta(node: MapNode) -> str:
        return str(node.meta.get(argument) or "")

    def by_prefix(node: MapNode) -> str:
        head = _SEPARATORS.split(node.id, maxsplit=1)[0]
        return head if head != node.id else ""  # no separator: no group

    return {"tag": by_tag, "meta": by_meta}.get(kind, by_prefix)


@dataclass
class Grouping:
    """Which node stands for which service, and the groups made."""

    shown: dict[str, str]  # service -> id on the map (itself or its group)
    groups: dict[str, list[str]]  # group id -> member services


def plan_groups(
    nodes: dict[str, MapNode], limit: int, key_of: Callable[[MapNode], str], keep: Iterable[str]
) -> Grouping:
    """Decide which services stay on their own and which join a group, within `limit`."""
    kept = set(keep)
    unhealthy = sorted(
        (n for n in nodes.values() if n.health in UNHEALTHY and n.id not in kept),
        key=lambda n: (_RANK.get(n.health, 3), n.id),
    )
    kept |= {n.id for n in unhealthy[: max(limit // 2 - len(kept), 0)]}
    by_key: dict[str, list[str]] = {}
    for name, node in nodes.items():
        if name in kept:
            continue
        by_key.setdefault(key_of(node) or "", []).append(name)
    alone = by_key.pop("", [])
    groups = {GROUP_PREFIX + key: sorted(members) for key, members in by_key.items()}
    # A group of one is just that service.
    for gid in [g for g, m in groups.items() if len(m) == 1]:
        alone.append(groups.pop(gid)[0])
    budget = max(limit - len(kept), 1)
    # Keep the biggest groups; the smallest, and the ungroupable, share "(other)".
    if len(groups) + len(alone) > budget:
        ranked = sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))
        room = max(budget - 1, 0)
        single = sorted(alone)
        if len(ranked) >= room:
            other = [m for _, members in ranked[room:] for m in members] + single
            groups = dict(ranked[:room])
        else:
            room_for_single = room - len(ranked)
            other = single[room_for_single:]
            kept |= set(single[:room_for_single])
            groups = dict(ranked)
        if other:
            groups[OTHER_GROUP] = sorted(groups.get(OTHER_GROUP, []) + other)
    else:
        kept |= set(alone)
    shown = {name: name for name in kept}
    for gid, members in groups.items():
        shown.update({m: gid for m in members})
    return Grouping(shown, groups)


def _merged_figures(parts: list[SpanRed]) -> SpanRed | None:
    if not parts:
        return None
    buckets = [0] * len(BUCKET_COLUMNS)
    for part in parts:
        for i, n in enumerate(part.buckets):
            buckets[i] += n
    return SpanRed(
        sum(p.count for p in parts),
        sum(p.errors for p in parts),
        parts[0].seconds,
        tuple(buckets),
        max(p.duration_max_ms for p in parts),
    )


def apply_groups(graph: Graph, grouping: Grouping, group_by: str) -> Graph:
    """Replace grouped services by their group nodes and aggregate the edges between them."""
    nodes: dict[str, MapNode] = {}
    for name, node in graph.nodes.items():
        if grouping.shown.get(name, name) == name:
            nodes[name] = node
    for gid, members in grouping.groups.items():
        states: dict[str, int] = {}
        for m in members:
            health = graph.nodes[m].health
            states[health] = states.get(health, 0) + 1
        worst = min(states, key=lambda s: _RANK.get(s, 3)) if states else "unknown"
        nodes[gid] = MapNode(
            gid,
            health=worst,
            sources=sorted({s for m in members for s in graph.nodes[m].sources}),
            kind="group",
            extra={
                "group": {
                    "key": gid[len(GROUP_PREFIX) :],
                    "by": group_by if gid != OTHER_GROUP else "remainder",
                    "members": len(members),
                    "health_counts": states,
                    "sample": members[:10],
                }
            },
        )
    merged: dict[tuple[str, str], list[MapEdge]] = {}
    internal: dict[str, int] = {}
    for (source, target), edge in graph.edges.items():
        a, b = grouping.shown.get(source, source), grouping.shown.get(target, target)
        if a == b:
            internal[a] = internal.get(a, 0) + 1
            continue
        merged.setdefault((a, b), []).append(edge)
    edges: dict[tuple[str, str], MapEdge] = {}
    for (a, b), parts in merged.items():
        if len(parts) == 1 and (parts[0].source, parts[0].target) == (a, b):
            edges[(a, b)] = parts[0]
            continue
        edges[(a, b)] = _aggregate(a, b, parts)
    for gid, count in internal.items():
        if gid in nodes and nodes[gid].kind == "group":
            nodes[gid].extra["group"]["internal_edges"] = count
    return Graph(nodes, edges, graph.start, graph.end, graph.notes)


def _aggregate(a: str, b: str, parts: list[MapEdge]) -> MapEdge:
    """One edge for many: traces' histograms added, Prometheus rates summed, drift counted."""
    figures = _merged_figures([p.figures for p in parts if p.figures is not None])
    rates = [p.prometheus_rate_rps for p in parts if p.figures is None and p.prometheus_rate_rps]
    drift_counts: dict[str, int] = {}
    for p in parts:
        if p.drift:
            drift_counts[p.drift] = drift_counts.get(p.drift, 0) + 1
    drifts = {p.drift for p in parts}
    edge = MapEdge(
        a,
        b,
        set().union(*(p.evidence for p in parts)),
        figures=figures,
        drift=drifts.pop() if len(drifts) == 1 else None,
        extra={"members": len(parts), "drift_counts": drift_counts},
    )
    if rates:
        # Members only Prometheus measured add their rates to the traced members' rate.
        edge.summed_rate_rps = sum(rates) + ((figures.rate_rps or 0.0) if figures else 0.0)
    return edge
