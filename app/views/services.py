"""The Services list and one service's page."""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import urlsplit

from flask import Blueprint, abort, render_template, request, url_for
from markupsafe import Markup, escape

from app.auth.access import require
from app.queries.probes import probe_timeline
from app.queries.releases import compare_releases, list_releases, release_json
from app.queries.service_actions import canary_choice, degrade_switch
from app.queries.service_view import service_view_json
from app.queries.services import (
    HEALTH_FILTERS,
    ServiceFilter,
    browse_services,
    get_service,
    service_topic,
)
from app.queries.slo import WINDOWS as BURN_WINDOWS
from app.queries.slo import slo_json
from app.queries.verdict import rules_from
from app.quoting import quote_input
from app.views.common import current_sources, qd, query_number, render_page_or_part
from app.views.slo import current_slo
from collectors.base import SourceUnavailable
from collectors.prometheus import PrometheusReader, service_red_sparkline

bp = Blueprint("services", __name__)
# Releases listed on a service's page, newest first (the API pages through them all).
RELEASE_ROWS = 10

# Rows the Services page renders at once, worst first; the rest are one "next" link away.
PAGE_SIZE = 100
# A list's `limit` when none is asked for, and the most it may ask for (DESIGN §5).
LIMIT_DEFAULT = 100
LIMIT_MAX = 5000
# Past this many tags the filter is a text box rather than a menu.
TAG_MENU_MAX = 150
_ON = ("1", "true", "on", "yes")


def service_filter_from(args, *, proxies_by_default: bool = True) -> ServiceFilter:
    """Read the list filter from query arguments, refusing unknown health values."""
    health = (args.get("health") or "").strip()
    if health and health not in HEALTH_FILTERS:
        abort(400, f"health must be one of {', '.join(HEALTH_FILTERS)}")
    proxies = args.get("proxies")
    return ServiceFilter(
        search=(args.get("q") or "").strip()[:200],
        health=health,
        tag=(args.get("tag") or "").strip()[:200],
        include_gone=args.get("gone") in _ON,
        include_proxies=proxies_by_default if proxies is None else proxies in _ON,
        offset=query_number(args, "offset", default=0),
        limit=query_number(args, "limit", default=LIMIT_DEFAULT, minimum=1, maximum=LIMIT_MAX),
    )


def filter_args(flt: ServiceFilter, **changes) -> dict[str, str]:
    """Return the query arguments that reproduce a filter (for links and live refreshes)."""
    flt = replace(flt, **changes)
    args = {
        "q": flt.search,
        "health": flt.health,
        "tag": flt.tag,
        "gone": "1" if flt.include_gone else "",
        "proxies": "1" if flt.include_proxies else "",
        "offset": str(flt.offset) if flt.offset else "",
    }
    return {k: v for k, v in args.items() if v}


# Where a long identifier may wrap: after the separators of ids, host names and addresses.
_BREAK_AFTER = re.compile(r"(?<=[-.:_/@])(?=.)")


@bp.app_template_filter("breakable")
def breakable(value) -> Markup:
    """Escape an identifier and let it wrap only after `-`, `.`, `:`, `_`, `/` or `@`."""
    return Markup("<wbr>").join(escape(part) for part in _BREAK_AFTER.split(str(value)))


@bp.app_template_filter("own_node_meta")
def own_node_meta(meta) -> list[tuple[str, str]]:
    """The node meta an operator set, sorted: without the keys Consul adds to every node."""
    return sorted((str(k), str(v)) for k, v in (meta or {}).items() if not k.startswith("consul-"))


@bp.app_template_filter("http_href")
def http_href(value) -> str | None:
    """Return the value if it is a plain http(s) URL a link may point at, else None."""
    text = value if isinstance(value, str) else ""
    if not text or text != text.strip() or any(c.isspace() or ord(c) < 32 for c in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return text


@bp.get("/services")
@require("viewer")
def index():
    """List services worst first, with search and filters."""
    ctx = qd()
    flt = service_filter_from(request.args, proxies_by_default=False)
    with ctx.store.session() as db:
        listing = browse_services(db, replace(flt, limit=None), ctx.clock(), PAGE_SIZE)
        sources = {s.name: s for s in current_sources(db)}
    flt = replace(flt, offset=listing.offset)
    pages = {}
    if listing.offset > 0:
        pages["previous"] = filter_args(flt, offset=max(listing.offset - PAGE_SIZE, 0))
    if listing.shown_to < listing.total:
        pages["next"] = filter_args(flt, offset=listing.shown_to)
    return render_page_or_part(
        "services/index.html",
        "services/_table.html",
        listing=listing,
        services=listing.services,
        flt=flt,
        args=filter_args(flt, offset=0),
        pages=pages,
        tags=listing.tags,
        tag_menu=len(listing.tags) <= TAG_MENU_MAX,
        sources=sources,
        stale_sources=[s for s in sources.values() if s.stale],
        health_filters=HEALTH_FILTERS,
        live_src=url_for("services.index", **filter_args(flt)),
    )


@bp.get("/services/<path:name>")
@require("viewer")
def detail(name: str):
    """Show one service: its instances, their checks and the recent transitions."""
    ctx = qd()
    with ctx.store.session() as db:
        found = get_service(db, name, ctx.clock())
        if found is None:
            abort(
                404,
                f"No source has reported a service named {quote_input(name)}. Check the spelling, "
                "or the Sources page if a source has not reported yet.",
            )
        sources = {s.name: s for s in current_sources(db)}
        view = service_view_json(
            db, found, sources, ctx.clock(), rules_from(ctx.config.verdict), ctx.config.probes
        )
        probe_timelines = {p["name"]: probe_timeline(db, p["name"]) for p in view["probes"]}
        slo = [slo_json(state, ctx.clock()) for state in current_slo(ctx, db, [name])]
        release_rows, releases_total = list_releases(db, name, limit=RELEASE_ROWS)
        comparison = compare_releases(db, name, ctx.clock())
        switch = degrade_switch(db, name, ctx.clock())
    releases = [release_json(r) for r in release_rows]
    catalog = ctx.config.catalog
    meta = found.service.meta or {}
    about = [
        ("Owner", catalog.owner_meta, meta.get(catalog.owner_meta)),
        ("Docs", catalog.docs_meta, meta.get(catalog.docs_meta)),
        ("Runbook", catalog.runbook_meta, meta.get(catalog.runbook_meta)),
    ]
    return render_page_or_part(
        "services/detail.html",
        "services/_detail_body.html",
        d=found,
        view=view,
        instance_views={i["id"]: i for i in view["instances"]},
        verdict_error_ratio=ctx.config.verdict.error_ratio,
        source=sources.get(found.service.source),
        about=about,
        live_topic=service_topic(found.service.name),
        probe_timelines=probe_timelines,
        slo=slo,
        burn_windows=list(BURN_WINDOWS),
        releases=releases,
        releases_total=releases_total,
        comparison=comparison,
        service_acts={
            "switch": switch,
            "canary": canary_choice(view["instances"], releases),
            "consul": ctx.config.consul is not None,
            "alertmanager": ctx.config.alertmanager is not None,
            "kv_release": {r["kv_role"]: r["version"] for r in releases if r["kv_role"]},
        },
    )


# Sparklines: a fixed drawing box; the SVG scales to its container.
SPARK_W, SPARK_H = 240, 36
TRAFFIC_FIGURES = (
    ("rate_rps", "requests/s", "{:.1f}"),
    ("error_ratio", "error ratio", "{:.1%}"),
    ("p95_ms", "p95 ms", "{:.0f}"),
)


def sparkline_points(points: list) -> dict | None:
    """Scale (time, value) points into the sparkline box; None when there is nothing to draw."""
    known = [(t, v) for t, v in points if v is not None]
    if len(known) < 2:
        return None
    t0, t1 = known[0][0].timestamp(), known[-1][0].timestamp()
    low = min(v for _, v in known)
    high = max(v for _, v in known)
    span_t, span_v = (t1 - t0) or 1.0, (high - low) or 1.0
    coords = " ".join(
        f"{(t.timestamp() - t0) / span_t * SPARK_W:.1f},"
        f"{SPARK_H - 2 - (v - low) / span_v * (SPARK_H - 4):.1f}"
        for t, v in known
    )
    return {"points": coords, "low": low, "high": high, "last": known[-1][1]}


@bp.get("/charts/traffic/<path:name>")
@require("viewer")
def traffic_chart(name: str):
    """Draw a service's rate, error ratio and p95 over the last hour, read from Prometheus."""
    ctx = qd()
    config = ctx.config.prometheus
    charts, problem = [], ""
    if config is None:
        problem = "No [prometheus] source is configured: there is no history to draw."
    else:
        reader = PrometheusReader(config.url, config.range_timeout_s)
        try:
            series = service_red_sparkline(reader, config, name, ctx.clock())
        except SourceUnavailable as exc:
            problem = f"Prometheus did not answer for the charts: {exc.reason}"
        else:
            for key, label, fmt in TRAFFIC_FIGURES:
                line = sparkline_points(series.get(key) or [])
                last = fmt.format(line["last"]) if line else ""
                charts.append({"key": key, "label": label, "line": line, "last": last})
        finally:
            reader.close()
    return render_template(
        "services/_traffic_chart.html",
        name=name,
        charts=charts,
        problem=problem,
        width=SPARK_W,
        height=SPARK_H,
    )
