"""The Map page: the dependency graph drawn from `GET /api/v1/map`, and the same map as a table."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlencode

from flask import Blueprint, request
from werkzeug.exceptions import BadRequest, NotFound

from app.auth.access import require
from app.views.common import qd, render_page_or_part
from app.views.map_query import read_graph

bp = Blueprint("map", __name__)

# The map's own query parameters (DESIGN §5 GET /api/v1/map); the page passes them on as they are.
PARAMS = ("service", "hops", "unhealthy", "since", "compare", "limit")
HOPS_OPTIONS = (1, 2, 3, 4, 5)
SINCE_OPTIONS = (
    ("", "last 15 min"),
    ("5m", "last 5 min"),
    ("1h", "last hour"),
    ("6h", "last 6 hours"),
    ("24h", "last 24 hours"),
)
COMPARE_OPTIONS = (
    ("", "no comparison"),
    ("1h", "an hour earlier"),
    ("24h", "a day earlier"),
    ("7d", "a week earlier"),
)
# What the API reads as true for `unhealthy` (app/views/map_query.py).
_ON = ("1", "true")


def page_params(args) -> dict[str, str]:
    """Return the map parameters of a query, as the page shows them (absent ones empty)."""
    params = {name: (args.get(name) or "").strip() for name in PARAMS}
    params["unhealthy"] = "true" if params["unhealthy"].lower() in _ON else ""
    return params


@bp.app_template_filter("map_rate")
def map_rate(value) -> str:
    """Format requests per second for the table (no figure is a dash, never 0)."""
    if value is None:
        return "—"
    if value == 0:
        return "0 rps"
    if value < 0.01:
        return "<0.01 rps"
    if value < 10:
        return f"{value:.{2 if value < 1 else 1}f} rps"
    return f"{round(value):,} rps"


@bp.app_template_filter("map_ratio")
def map_ratio(value) -> str:
    """Format an error ratio (0-1) as a percentage."""
    if value is None:
        return "—"
    pct = value * 100
    if pct == 0:
        return "0%"
    if pct < 0.1:
        return "<0.1%"
    return f"{pct:.1f}%" if pct < 10 else f"{round(pct)}%"


@bp.app_template_filter("map_ms")
def map_ms(value) -> str:
    """Format a latency in milliseconds."""
    if value is None:
        return "—"
    if value < 1:
        return "<1 ms"
    if value < 1000:
        return f"{round(value)} ms"
    return f"{value / 1000:.2f} s"


def _diff_status(item: dict) -> str | None:
    """Return what the comparison says of a node or edge, or None when it is the same."""
    diff = item.get("diff")
    status = diff.get("status") if isinstance(diff, dict) else None
    return status if status in ("appeared", "vanished", "changed") else None


def _member_count(node: dict) -> int | None:
    """Return how many services a group node stands for (None for a service)."""
    group = node.get("group") if node.get("kind") == "group" else None
    return group.get("members") if isinstance(group, dict) else None


def _node_name(node: dict) -> str:
    """Return how the map names a node: the service, or its group ("payments-*")."""
    if node.get("kind") != "group":
        return str(node["id"])
    group = node.get("group") or {}
    if group.get("by") == "remainder":
        return "other services"
    key = str(group.get("key") or node["id"])
    return f"{key}-*" if group.get("by") == "prefix" else key


def _searchable_names(nodes: list[dict]) -> set[str]:
    """Return the services the search box offers: those drawn and the groups' first members."""
    names = set()
    for node in nodes:
        if node.get("kind") == "group":
            names.update(str(m) for m in (node.get("group") or {}).get("sample") or ())
        else:
            names.add(str(node["id"]))
    return names


def _notes(graph: dict | None) -> list[tuple[str, str]]:
    """Say what the map API grouped or could not read, so no cap is silent (also without JS)."""
    if not graph:
        return []
    notes = []
    groups = graph.get("groups") or []
    if graph.get("truncated") or groups:
        members = sum(g.get("members") or 0 for g in groups)
        total = (graph.get("totals") or {}).get("nodes")
        notes.append(
            (
                "Too many services to draw one by one"
                + (f" ({total:,} services)" if isinstance(total, int) else "")
                + f": {len(groups)} group{'' if len(groups) == 1 else 's'} stand for "
                f"{members:,} service{'' if members == 1 else 's'}. Unhealthy services stay on "
                "their own. Search for a service to see it and its neighbours.",
                "grouped",
            )
        )
    notes.extend((str(text), "warning") for text in graph.get("notes") or ())
    return notes


@bp.get("/map")
@require("viewer")
def index():
    """Show the dependency map; without JavaScript, the same nodes and edges as a table.

    With `HX-Request` (a live refresh) only the table part, which carries the map's data.
    """
    params = page_params(request.args)
    graph, error, status = None, None, 200
    try:
        graph = read_graph(request.args)
    except (BadRequest, NotFound) as exc:
        error, status = exc.description, exc.code
    calls_out: Counter[str] = Counter()
    calls_in: Counter[str] = Counter()
    for edge in graph["edges"] if graph else ():
        calls_out[str(edge["source"])] += 1
        calls_in[str(edge["target"])] += 1
    others = {k: v for k, v in params.items() if v and k != "service" and k != "hops"}
    focus_args = {k: v for k, v in params.items() if v and k != "service"}
    service_names = sorted(_searchable_names(graph["nodes"]) if graph else ())
    html = render_page_or_part(
        "map/index.html",
        "map/_table.html",
        params=params,
        map_query=urlencode([(k, v) for k, v in params.items() if v]),
        graph=graph,
        error=error,
        notes=_notes(graph),
        calls_out=calls_out,
        calls_in=calls_in,
        service_names=service_names,
        clear_focus_args=others,
        focus_args=focus_args,
        hops_options=HOPS_OPTIONS,
        since_options=SINCE_OPTIONS,
        since_values=[v for v, _ in SINCE_OPTIONS],
        compare_options=COMPARE_OPTIONS,
        compare_values=[v for v, _ in COMPARE_OPTIONS],
        error_ratio=qd().config.verdict.error_ratio,
        node_diff=_diff_status,
        node_member_count=_member_count,
        node_name=_node_name,
    )
    return html, status
