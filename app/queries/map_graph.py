"""The dependency map's graph: services as nodes, calls as edges, with evidence and drift.

Nodes are the services any source knows: the catalog (Consul, static, balancer-only services)
and the traces. Edges come from three kinds of evidence: the traces (RED from spans over the
window), Consul Connect upstreams (declared), and an optional Prometheus edge query. Drift
compares what is declared with what is observed; the whole-fleet view past the node limit is
grouped (app/queries/map_layout.py), `compare` diffs two windows (app/queries/map_diff.py), and
app/queries/map.py puts the answer together.

Every string here comes from the fleet (service names, tags, meta): it is returned as data,
never as markup; the page escapes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Service, ServiceUpstream
from app.queries.metrics import RedFigures, red_by_service
from app.queries.probes import failing_probe_services
from app.queries.services import PROXY_KIND
from app.queries.sources import iso
from app.queries.span_red import SpanRed, all_span_red, span_pairs
from app.queries.verdict import VerdictRules, service_verdict
from collectors.prometheus_edges import EdgeReading

services_t = Service.__table__
upstreams_t = ServiceUpstream.__table__

DEFAULT_WINDOW = timedelta(minutes=15)
UNHEALTHY = ("critical", "warning")


@dataclass
class MapNode:
    """One service on the map."""

    id: str
    health: str = "unknown"
    sources: list[str] = field(default_factory=list)
    kind: str = "service"
    tags: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    mesh: bool = False  # it has a Connect sidecar or declares upstreams: drift applies
    red: dict | None = None
    figures: SpanRed | None = None  # its own span figures, for grouping and diffs
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Render as a `nodes[]` entry."""
        body = {
            "id": self.id,
            "kind": self.kind,
            "health": self.health,
            "sources": sorted(self.sources),
            "tags": list(self.tags),
            "mesh": self.mesh,
            "red": self.red,
        }
        body.update(self.extra)
        return body


@dataclass
class MapEdge:
    """One dependency, with the evidence for it and its figures over the window."""

    source: str
    target: str
    evidence: set[str] = field(default_factory=set)
    figures: SpanRed | None = None  # from traces
    prometheus_rate_rps: float | None = None
    drift: str | None = None
    summed_rate_rps: float | None = None  # an aggregated edge's rate over mixed evidence
    extra: dict = field(default_factory=dict)

    @property
    def rate_rps(self) -> float | None:
        if self.summed_rate_rps is not None:
            return self.summed_rate_rps
        if self.figures is not None:
            return self.figures.rate_rps
        return self.prometheus_rate_rps

    @property
    def error_ratio(self) -> float | None:
        return self.figures.error_ratio if self.figures is not None else None

    @property
    def p95_ms(self) -> float | None:
        return self.figures.p95_ms if self.figures is not None else None

    @property
    def observed(self) -> bool:
        return bool(self.evidence & {"traces", "prometheus"})

    def to_json(self) -> dict:
        """Render as an `edges[]` entry (figures None when no source measured them, never 0)."""
        body = {
            "id": f"{self.source}->{self.target}",
            "source": self.source,
            "target": self.target,
            "rate_rps": _rounded(self.rate_rps),
            "error_ratio": _rounded(self.error_ratio, 4),
            "p95_ms": _rounded(self.p95_ms, 1),
            "evidence": sorted(self.evidence),
            "drift": self.drift,
        }
        body.update(self.extra)
        return body


def _rounded(value: float | None, digits: int | None = None) -> float | None:
    """Round to `digits` decimals, or (rates) to 4 significant digits: 0.001/s stays 0.001."""
    if value is None:
        return None
    return round(value, digits) if digits is not None else float(f"{value:.4g}")


@dataclass
class Graph:
    """Nodes by id and edges by (source, target), before narrowing and grouping."""

    nodes: dict[str, MapNode]
    edges: dict[tuple[str, str], MapEdge]
    start: datetime
    end: datetime
    notes: list[str] = field(default_factory=list)

    def neighbours(self) -> dict[str, set[str]]:
        """Return each node's neighbours, both directions."""
        found: dict[str, set[str]] = {n: set() for n in self.nodes}
        for source, target in self.edges:
            found.setdefault(source, set()).add(target)
            found.setdefault(target, set()).add(source)
        return found

    def keep(self, ids: Iterable[str]) -> Graph:
        """Return the subgraph of the given nodes and the edges between them."""
        wanted = set(ids)
        return Graph(
            {n: node for n, node in self.nodes.items() if n in wanted},
            {k: e for k, e in self.edges.items() if k[0] in wanted and k[1] in wanted},
            self.start,
            self.end,
            self.notes,
        )


def _red_json(red: RedFigures | None, spans: SpanRed | None) -> dict | None:
    """Prometheus's figures when it has some, else the spans', with the source named."""
    if red is not None and red.rate_rps is not None:
        source, rate, ratio, p95 = red.source, red.rate_rps, red.error_ratio, red.p95_ms
    elif spans is not None:
        source, rate, ratio, p95 = "traces", spans.rate_rps, spans.error_ratio, spans.p95_ms
    else:
        return None
    return {
        "source": source,
        "rate_rps": _rounded(rate),
        "error_ratio": _rounded(ratio, 4),
        "p95_ms": _rounded(p95, 1),
    }


def _catalog_nodes(db: Session, grouping: str) -> dict[str, MapNode]:
    """Every current catalog service but sidecar proxies.

    Tags and meta (JSON, the costly columns) are read here only when grouping needs them
    ("tags" or "meta"); `add_tags` reads the tags of the nodes finally shown.
    """
    columns = [services_t.c[n] for n in ("name", "source", "kind", "health")]
    if grouping in ("tags", "meta"):
        columns.append(services_t.c[grouping if grouping == "meta" else "tags"])
    nodes: dict[str, MapNode] = {}
    for row in db.execute(select(*columns).where(services_t.c.gone_at.is_(None))):
        if row.kind == PROXY_KIND:
            continue
        node = nodes[row.name] = MapNode(row.name, health=row.health, sources=[row.source])
        if grouping == "tags":
            node.tags = list(row.tags or ())
        elif grouping == "meta":
            node.meta = dict(row.meta or {})
    proxies = db.execute(
        select(services_t.c.meta).where(
            services_t.c.kind == PROXY_KIND, services_t.c.gone_at.is_(None)
        )
    )
    for (meta,) in proxies:
        destination = (meta or {}).get("connect_destination")
        if destination in nodes:
            nodes[destination].mesh = True
    return nodes


def _node(nodes: dict[str, MapNode], name: str, source: str) -> MapNode:
    node = nodes.get(name)
    if node is None:
        node = nodes[name] = MapNode(name, sources=[source])
    elif source not in node.sources:
        node.sources.append(source)
    return node


def build_graph(
    db: Session,
    start: datetime,
    end: datetime,
    prometheus_edges: Iterable[EdgeReading] = (),
    *,
    current: bool = True,
    grouping: str = "",
    only: set[str] | None = None,
) -> Graph:
    """Gather every node and edge of the window [start, end) with evidence and drift.

    `current=False` builds a past window for a diff: observed evidence only, since the catalog
    keeps no history of upstreams or health and would only repeat today's. `grouping`
    ("tags", "meta" or "") names what the grouping reads of each catalog service. `only`
    keeps the services named and the edges between them (a focus, see `focus_scope`).
    """
    nodes = _catalog_nodes(db, grouping) if current else {}
    if only is not None:
        nodes = {name: node for name, node in nodes.items() if name in only}
        prometheus_edges = [e for e in prometheus_edges if e.source in only and e.target in only]
    summed = all_span_red(db, start, end, only)
    span_services, span_edges, start = summed.services, summed.edges, summed.start
    edges: dict[tuple[str, str], MapEdge] = {}
    for (source, target), figures in span_edges.items():
        edges[(source, target)] = MapEdge(source, target, {"traces"}, figures=figures)
    for observed in prometheus_edges:
        edge = edges.setdefault(
            (observed.source, observed.target), MapEdge(observed.source, observed.target)
        )
        edge.evidence.add(observed.evidence)
        edge.prometheus_rate_rps = observed.rate_rps
    if current:
        for row in db.execute(select(upstreams_t.c.service, upstreams_t.c.upstream).distinct()):
            if only is not None and (row.service not in only or row.upstream not in only):
                continue
            edge = edges.setdefault((row.service, row.upstream), MapEdge(row.service, row.upstream))
            edge.evidence.add("consul")
            if row.service in nodes:
                nodes[row.service].mesh = True
    for name in span_services:
        _node(nodes, name, "traces")
    for (source, target), edge in edges.items():
        evidence = "traces" if "traces" in edge.evidence else sorted(edge.evidence)[0]
        _node(nodes, source, evidence)
        _node(nodes, target, evidence)
    if current:
        _mark_drift(nodes, edges)
    for name, figures in span_services.items():
        nodes[name].figures = figures
    return Graph(nodes, edges, start, end)


def focus_scope(
    db: Session,
    start: datetime,
    end: datetime,
    prometheus_edges: Iterable[EdgeReading],
    service: str,
    hops: int,
) -> tuple[set[str] | None, dict[str, int]]:
    """Find the services within `hops` calls of `service` from the edges' ends alone, so only
    those are read in full; return them (None when the service is on no source's map) and the
    whole fleet's node and edge counts."""
    catalog = {
        row.name
        for row in db.execute(
            select(services_t.c.name, services_t.c.kind).where(services_t.c.gone_at.is_(None))
        )
        if row.kind != PROXY_KIND
    }
    pairs = set()
    for source, target in span_pairs(db, start, end):
        if target:
            pairs.add((source, target))
        else:
            catalog.add(source)
    pairs.update(
        (row.service, row.upstream)
        for row in db.execute(select(upstreams_t.c.service, upstreams_t.c.upstream))
    )
    pairs.update((e.source, e.target) for e in prometheus_edges)
    neighbours: dict[str, set[str]] = {}
    for source, target in pairs:
        neighbours.setdefault(source, set()).add(target)
        neighbours.setdefault(target, set()).add(source)
    totals = {"nodes": len(catalog | neighbours.keys()), "edges": len(pairs)}
    if service not in catalog and service not in neighbours:
        return None, totals
    seen, frontier = {service}, {service}
    for _ in range(hops):
        frontier = {n for f in frontier for n in neighbours.get(f, ())} - seen
        seen |= frontier
    return seen, totals


def _mark_drift(nodes: Mapping[str, MapNode], edges: Mapping[tuple[str, str], MapEdge]) -> None:
    """Declared but unobserved, or observed from a mesh service but undeclared.

    A caller outside the mesh declares nothing, so its calls cannot drift from a declaration.
    """
    for (source, _target), edge in edges.items():
        declared = "consul" in edge.evidence
        if declared and not edge.observed:
            edge.drift = "declared_only"
        elif not declared and edge.observed and nodes[source].mesh:
            edge.drift = "observed_only"


def merge_health(db: Session, graph: Graph, rules: VerdictRules) -> None:
    """Merge each node's rollup with its RED error ratio (app/queries/verdict.py).

    Only a ratio above the threshold can move a service's verdict (alerts and the balancers'
    word on single instances are its page's detail), so only those are judged. Called once
    the map is narrowed to a focus: the nodes left out are never judged.
    """
    red = red_by_service(db, graph.nodes if len(graph.nodes) < 500 else None)
    for name, node in graph.nodes.items():
        node.red = _red_json(red.get(name), node.figures)
        ratio = node.red["error_ratio"] if node.red is not None else None
        if ratio is not None and ratio > rules.error_ratio:
            node.health = service_verdict(node.health, [], node.red, [], rules)["health"]
    services = [name for name, node in graph.nodes.items() if node.kind == "service"]
    for name in failing_probe_services(db, services, graph.end):
        graph.nodes[name].health = "critical"  # as the service's own verdict says


def add_tags(db: Session, nodes: Iterable[MapNode]) -> None:
    """Fill in the catalog tags of the nodes shown (the others are never read)."""
    wanted = {n.id: n for n in nodes if n.kind == "service" and not n.tags}
    names = sorted(wanted)
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for name, tags in db.execute(
            select(services_t.c.name, services_t.c.tags).where(services_t.c.name.in_(chunk))
        ):
            wanted[name].tags = list(tags or ())


def window_json(start: datetime, end: datetime) -> dict:
    """Render a window as {"start_at", "end_at", "seconds"}: the traces' figures are sums of
    whole minutes, so it starts on the first minute summed."""
    return {"start_at": iso(start), "end_at": iso(end), "seconds": (end - start).total_seconds()}
