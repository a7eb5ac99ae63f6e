"""Who an action touches beyond its target: the services that call it, from the map."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.config import Config
from app.queries.map import MapRequest, UnknownService, map_json
from app.queries.map_graph import DEFAULT_WINDOW
from app.queries.verdict import rules_from
from collectors.base import SourceUnavailable
from collectors.prometheus import PrometheusReader
from collectors.prometheus_edges import read_edges


def callers_of(db: Session, config: Config, service: str, now: datetime) -> dict[str, Any]:
    """Return `{"callers": [...], "callers_note"}`: the map's edges into `service`, busiest first.

    The map's own reading (traces, Consul upstreams, Prometheus edges over its default window,
    as `GET /api/v1/map?service=` answers), so the plan and the Map page agree. A source that
    does not answer leaves a note, not an error: the plan still stands.
    """
    notes: list[str] = []
    edges = []
    query = config.map.edge_query
    if query and config.prometheus is not None:
        reader = PrometheusReader(config.prometheus.url, config.prometheus.range_timeout_s)
        labels = (config.map.edge_source_label, config.map.edge_target_label)
        try:
            edges = [e for e in read_edges(reader, query, *labels) if e.target == service]
        except SourceUnavailable as exc:
            notes.append(f"prometheus edges missing: {exc.reason}")
        finally:
            reader.close()
    asked = MapRequest(start=now - DEFAULT_WINDOW, end=now, service=service, hops=1,
                       node_limit=100_000)  # fmt: skip
    try:
        graph = map_json(db, asked, rules_from(config.verdict), edges, (), notes)
    except UnknownService:
        return {"callers": [], "callers_note": f"{service} is on no source's map: no callers known"}
    health = {n["id"]: n["health"] for n in graph["nodes"]}
    callers = [
        {
            "service": e["source"],
            "health": health.get(e["source"], "unknown"),
            "rate_rps": e["rate_rps"],
            "error_ratio": e["error_ratio"],
            "evidence": e["evidence"],
        }
        for e in graph["edges"]
        if e["target"] == service and e["source"] != service
    ]
    callers.sort(key=lambda c: (-(c["rate_rps"] or 0), c["service"]))
    note = "; ".join(graph["notes"]) or None
    if not callers and note is None:
        note = "no service is seen calling it (traces, Consul upstreams, Prometheus)"
    return {"callers": callers, "callers_note": note}
