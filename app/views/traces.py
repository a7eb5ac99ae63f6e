"""The Traces pages (search, waterfall, compare) and `/api/v1/traces`."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, jsonify, request

from app.auth.access import require
from app.models.traces import SPAN_KINDS, STATUS_CODES
from app.queries.traces import (
    ORDERS,
    SpanNode,
    TraceDetail,
    TraceSearch,
    TraceSummary,
    compare_traces,
    get_trace,
    iso_ns,
    search_traces,
    service_operations,
    trace_services,
)
from app.quoting import quote_input
from app.views.common import qd, query_number, render_page_or_part

bp = Blueprint("traces", __name__)
api_bp = Blueprint("traces_api", __name__, url_prefix="/api/v1")

LIMIT_DEFAULT = 100  # DESIGN §5
LIMIT_MAX = 5000
PAGE_SIZE = 50
TEXT_MAX = 255  # the spans table's service and name columns
TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
# How far back the page's "last …" menu looks; `lookback` takes the same names.
LOOKBACKS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
ERROR_VALUES = {"": False, "false": False, "0": False, "true": True, "1": True, "on": True}
# Waterfall: past this depth subtrees stop nesting (still indented, no longer collapsible).
NEST_MAX = 32
INDENT_MAX = 24
# Scatter and bars: fixed drawing boxes; the SVG scales to its container.
SCATTER_W, SCATTER_H = 1000, 220
BAR_W = 1000


@bp.app_template_filter("ns_iso")
def ns_iso(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC."""
    return iso_ns(ns)


@bp.app_template_filter("ns_clock")
def ns_clock(ns: int) -> str:
    """Nanoseconds since the epoch as a readable UTC time to the millisecond."""
    text = iso_ns(ns)
    return f"{text[:10]} {text[11:23]}"


@bp.app_template_filter("attr_text")
def attr_text(value) -> str:
    """An attribute value as text: strings as sent, anything else as JSON (escaped later)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _text_arg(args, name: str) -> str:
    value = (args.get(name) or "").strip()
    if len(value) > TEXT_MAX:
        abort(400, f"{name} is longer than {TEXT_MAX} characters")
    return value


def _tag_args(args) -> tuple[tuple[str, str], ...]:
    tags = []
    for raw in args.getlist("tag"):
        raw = raw.strip()
        if not raw:
            continue
        key, sep, value = raw.partition(":")
        key = key.strip()
        if not sep or not key:
            abort(400, f"tag must be key:value, not {quote_input(raw)}")
        if '"' in key or "\\" in key or len(key) > TEXT_MAX or not key.isprintable():
            abort(400, f"tag key {quote_input(key)} has a quote, a backslash or is too long")
        tags.append((key, value.strip()))
    return tuple(tags)


def _time_arg(args, name: str) -> int | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        abort(400, f"{name} must be an RFC 3339 time with a zone, such as "
              f"2026-12-02T04:00:00Z, not {quote_input(raw)}")  # fmt: skip
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000


def trace_search_from(args, *, limit_default: int = LIMIT_DEFAULT) -> TraceSearch:
    """Read a trace search from query arguments, refusing what cannot be meant (400)."""
    error = (args.get("error") or "").strip().lower()
    if error not in ERROR_VALUES:
        abort(400, f"error must be true or false, not {quote_input(error)}")
    order = (args.get("order") or "recent").strip()
    if order not in ORDERS:
        abort(400, f"order must be one of {', '.join(ORDERS)}")
    min_ms = query_number(args, "min_ms")
    max_ms = query_number(args, "max_ms")
    if min_ms is not None and max_ms is not None and max_ms < min_ms:
        abort(400, "max_ms is below min_ms")
    since_ns, until_ns = _time_arg(args, "since"), _time_arg(args, "until")
    lookback = (args.get("lookback") or "").strip()
    if lookback:
        if lookback not in LOOKBACKS:
            abort(400, f"lookback must be one of {', '.join(LOOKBACKS)}")
        if since_ns is not None:
            abort(400, "give since or lookback, not both")
        now_s = qd().clock().timestamp()
        since_ns = int((now_s - LOOKBACKS[lookback]) * 1_000_000_000)
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        abort(400, "until must be after since")
    return TraceSearch(
        service=_text_arg(args, "service"),
        operation=_text_arg(args, "operation"),
        tags=_tag_args(args),
        min_ns=None if min_ms is None else min_ms * 1_000_000,
        max_ns=None if max_ms is None else max_ms * 1_000_000,
        error=ERROR_VALUES[error],
        since_ns=since_ns,
        until_ns=until_ns,
        order=order,
        limit=query_number(args, "limit", default=limit_default, minimum=1, maximum=LIMIT_MAX),
        offset=query_number(args, "offset", default=0),
    )


def _trace_id(raw: str) -> str:
    if not TRACE_ID.fullmatch(raw):
        abort(400, f"a trace id is 32 hex digits, not {quote_input(raw)}")
    return raw.lower()


def _load_trace(db, raw: str) -> TraceDetail:
    trace_id = _trace_id(raw)
    found = get_trace(db, trace_id)
    if found is None:
        abort(404, f"no trace {trace_id} is stored (it may have aged out)")
    return found


@api_bp.get("/traces")
@require("viewer")
def api_search():
    """Search traces: each span filter matches one span of the trace (DESIGN §5)."""
    search = trace_search_from(request.args)
    with qd().store.session() as db:
        page = search_traces(db, search)
    return jsonify({"traces": [t.to_json() for t in page.traces], "more": page.more})


@api_bp.get("/traces/<trace_id>")
@require("viewer")
def api_trace(trace_id: str):
    """Return one trace's spans with parent links, its services and its critical path."""
    with qd().store.session() as db:
        found = _load_trace(db, trace_id)
    return jsonify(found.to_json())


def search_args(search: TraceSearch, raw_args, **changes) -> dict:
    """The query arguments that reproduce a search on the page (for links)."""
    args = {
        "service": search.service,
        "operation": search.operation,
        "tag": [f"{k}:{v}" for k, v in search.tags],
        "min_ms": raw_args.get("min_ms", ""),
        "max_ms": raw_args.get("max_ms", ""),
        "error": "true" if search.error else "",
        "lookback": raw_args.get("lookback", ""),
        "since": raw_args.get("since", "") if not raw_args.get("lookback") else "",
        "until": raw_args.get("until", ""),
        "order": search.order if search.order != "recent" else "",
        "limit": raw_args.get("limit", ""),
        "offset": str(search.offset) if search.offset else "",
    }
    args.update(changes)
    return {k: v for k, v in args.items() if v}


@dataclass(frozen=True)
class ScatterPoint:
    summary: TraceSummary
    x: float
    y: float


def scatter(traces: list[TraceSummary]) -> dict | None:
    """Place each result at (start, duration) in the scatter's box; None when empty."""
    if not traces:
        return None
    t0 = min(t.start_ns for t in traces)
    t1 = max(t.start_ns for t in traces)
    longest = max(t.duration_ns for t in traces) or 1
    span_t = (t1 - t0) or 1
    pad = 12
    points = [
        ScatterPoint(
            t,
            pad + (t.start_ns - t0) / span_t * (SCATTER_W - 2 * pad),
            SCATTER_H - pad - t.duration_ns / longest * (SCATTER_H - 2 * pad),
        )
        for t in traces
    ]
    return {"points": points, "first_ns": t0, "last_ns": t1, "longest_ns": longest}


@bp.get("/traces")
@require("viewer")
def index():
    """Search traces; results with duration bars and a scatter of duration over time."""
    search = trace_search_from(request.args, limit_default=PAGE_SIZE)
    started = time.perf_counter()
    with qd().store.session() as db:
        page = search_traces(db, search)
        services = trace_services(db)
        operations = service_operations(db, search.service) if search.service else []
    took_ms = (time.perf_counter() - started) * 1000
    pages = {}
    if search.offset > 0:
        previous = max(search.offset - search.limit, 0)
        pages["previous"] = search_args(search, request.args, offset=str(previous or ""))
    if page.more:
        pages["next"] = search_args(search, request.args, offset=str(search.offset + search.limit))
    longest = max((t.duration_ns for t in page.traces), default=0) or 1
    return render_page_or_part(
        "traces/index.html",
        "traces/_search.html",
        search=search,
        raw=request.args,
        traces=page.traces,
        pages=pages,
        longest_ns=longest,
        bar_w=BAR_W,
        plot=scatter(page.traces),
        plot_w=SCATTER_W,
        plot_h=SCATTER_H,
        services=services,
        operations=operations,
        lookbacks=LOOKBACKS,
        took_ms=took_ms,
        args=search_args(search, request.args),
    )


@dataclass(frozen=True)
class WaterfallRow:
    span: SpanNode
    closes_before: int  # subtrees that end before this row
    opens: bool  # this row is the summary of its collapsible subtree
    indent: int


def waterfall_rows(detail: TraceDetail) -> tuple[list[WaterfallRow], int]:
    """Lay spans out in tree order, saying where each collapsible subtree opens and closes."""
    rows, open_depths = [], []
    for span in detail.spans:
        closes = 0
        while open_depths and open_depths[-1] >= span.depth:
            open_depths.pop()
            closes += 1
        opens = bool(span.children) and span.depth < NEST_MAX
        rows.append(WaterfallRow(span, closes, opens, min(span.depth, INDENT_MAX)))
        if opens:
            open_depths.append(span.depth)
    return rows, len(open_depths)


def bar(start_ns: int, duration_ns: int, trace_start_ns: int, total_ns: int) -> tuple[float, float]:
    """A span's bar as (x, width) in the waterfall's box, never thinner than a hairline."""
    total = total_ns or 1
    x = (start_ns - trace_start_ns) / total * BAR_W
    width = max(duration_ns / total * BAR_W, 2.0)
    return round(min(x, BAR_W - 2.0), 2), round(width, 2)


@bp.get("/traces/<trace_id>")
@require("viewer")
def detail(trace_id: str):
    """Show one trace as a waterfall with its critical path, attributes and services."""
    with qd().store.session() as db:
        found = _load_trace(db, trace_id)
    rows, closes_after = waterfall_rows(found)
    selected = (request.args.get("span") or "").strip().lower()
    return render_page_or_part(
        "traces/detail.html",
        "traces/_waterfall.html",
        trace=found,
        rows=rows,
        closes_after=closes_after,
        selected=selected,
        bar=bar,
        bar_w=BAR_W,
        kinds=SPAN_KINDS,
        statuses=STATUS_CODES,
        ticks=[found.duration_ns * i // 4 for i in range(5)],
    )


@bp.get("/traces/compare")
@require("viewer")
def compare():
    """Show two traces side by side: matched structure, timing differences, spans in only one."""
    raw_a, raw_b = (request.args.get("a") or "").strip(), (request.args.get("b") or "").strip()
    if not raw_a or not raw_b:
        return render_page_or_part(
            "traces/compare.html", "traces/_compare.html", a=None, b=None, rows=[],
            raw_a=raw_a, raw_b=raw_b,
        )  # fmt: skip
    with qd().store.session() as db:
        a, b = _load_trace(db, raw_a), _load_trace(db, raw_b)
    rows = compare_traces(a, b)
    counts = {}
    for row in rows:
        counts[row.change] = counts.get(row.change, 0) + 1
    return render_page_or_part(
        "traces/compare.html",
        "traces/_compare.html",
        a=a,
        b=b,
        rows=rows,
        counts=counts,
        raw_a=a.trace_id,
        raw_b=b.trace_id,
        indent_max=INDENT_MAX,
    )
