"""Compare the map of two windows: what appeared, what vanished, what changed beyond thresholds.

Only observed evidence has a past (traces, the Prometheus edge query at the earlier time); the
Consul catalog keeps no history of upstreams, so declared edges are compared as observed or
not. A figure changed when (docs/api.md, "Map diff"):

- rate: one window's rate is at least `RATE_FACTOR` times the other's;
- error ratio: it moved by at least `ERROR_RATIO_POINTS` (0-1 scale, i.e. 5 points);
- p95: one window's p95 is at least `P95_FACTOR` times the other's and they differ by at
  least `P95_MIN_MS` (a jump from 2 ms to 4 ms is noise, not news).
"""

from __future__ import annotations

from app.queries.map_graph import Graph, MapEdge, MapNode

RATE_FACTOR = 2.0
ERROR_RATIO_POINTS = 0.05
P95_FACTOR = 1.5
P95_MIN_MS = 20.0


def _figures(rate, ratio, p95) -> dict:
    return {
        "rate_rps": None if rate is None else float(f"{rate:.4g}"),
        "error_ratio": None if ratio is None else round(ratio, 4),
        "p95_ms": None if p95 is None else round(p95, 1),
    }


def changes(before: dict, after: dict) -> list[str]:
    """Name the figures that moved beyond their thresholds ("rate", "error_ratio", "p95")."""
    moved = []
    b, a = before.get("rate_rps"), after.get("rate_rps")
    if b and a and max(a, b) >= RATE_FACTOR * min(a, b):
        moved.append("rate")
    b, a = before.get("error_ratio"), after.get("error_ratio")
    if b is not None and a is not None and abs(a - b) >= ERROR_RATIO_POINTS:
        moved.append("error_ratio")
    b, a = before.get("p95_ms"), after.get("p95_ms")
    if b and a and max(a, b) >= P95_FACTOR * min(a, b) and abs(a - b) >= P95_MIN_MS:
        moved.append("p95")
    return moved


def _edge_figures(edge: MapEdge | None) -> dict:
    if edge is None:
        return _figures(None, None, None)
    return _figures(edge.rate_rps, edge.error_ratio, edge.p95_ms)


def _node_figures(node: MapNode | None) -> dict:
    """A node's own span figures: the one source both windows have."""
    spans = node.figures if node is not None else None
    if spans is None:
        return _figures(None, None, None)
    return _figures(spans.rate_rps, spans.error_ratio, spans.p95_ms)


def _active(graph: Graph) -> set[str]:
    """Services with traffic in the window: their own spans, or an observed edge."""
    active = {name for name, node in graph.nodes.items() if node.figures is not None}
    for (source, target), edge in graph.edges.items():
        if edge.observed:
            active |= {source, target}
    return active


def _status(was: bool, now: bool, moved: list[str]) -> str:
    if was and not now:
        return "vanished"
    if now and not was:
        return "appeared"
    return "changed" if moved else "same"


def diff_graphs(current: Graph, previous: Graph) -> dict:
    """Add a `diff` to every edge and node of `current` (vanished ones added); return a summary.

    An edge exists in a window when some source observed it there; a node when it had
    traffic there (its own spans or an observed edge). Nodes compare their span figures.
    """
    summary = {
        "edges": {"appeared": 0, "vanished": 0, "changed": 0, "same": 0},
        "nodes": {"appeared": 0, "vanished": 0, "changed": 0, "same": 0},
    }
    for key in sorted(set(current.edges) | set(previous.edges)):
        now_edge, was_edge = current.edges.get(key), previous.edges.get(key)
        now_seen = now_edge is not None and now_edge.observed
        was_seen = was_edge is not None and was_edge.observed
        if not now_seen and not was_seen:
            if now_edge is not None:
                now_edge.extra["diff"] = {"status": "same", "changes": [], "before": None}
            continue
        # Figures only where they are compared or shown: p95 costs a histogram walk each.
        before = _edge_figures(was_edge) if was_seen else None
        moved = changes(before, _edge_figures(now_edge)) if was_seen and now_seen else []
        status = _status(was_seen, now_seen, moved)
        summary["edges"][status] += 1
        if now_edge is None:
            now_edge = current.edges[key] = MapEdge(key[0], key[1], set())
            now_edge.extra["vanished"] = True
        now_edge.extra["diff"] = {"status": status, "changes": moved, "before": before}
    now_active, was_active = _active(current), _active(previous)
    for name in sorted(now_active | was_active):
        now_node, was_node = current.nodes.get(name), previous.nodes.get(name)
        was_seen, now_seen = name in was_active, name in now_active
        before = _node_figures(was_node) if was_seen else None
        moved = changes(before, _node_figures(now_node)) if was_seen and now_seen else []
        status = _status(was_seen, now_seen, moved)
        summary["nodes"][status] += 1
        if now_node is None:
            now_node = current.nodes[name] = MapNode(name, sources=list(was_node.sources))
            now_node.extra["vanished"] = True
        now_node.extra["diff"] = {"status": status, "changes": moved, "before": before}
    for node in current.nodes.values():
        node.extra.setdefault("diff", {"status": "same", "changes": [], "before": None})
    return summary
