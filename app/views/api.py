"""The JSON API under /api/v1 (documented in static/openapi.json)."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, jsonify, redirect, request, url_for

from app.auth.access import public, require
from app.collection.jobs import declared_jobs
from app.queries.jobs import job_views, leader_view
from app.queries.service_view import service_view_json
from app.queries.services import (
    get_service,
    list_services,
    service_summary_json,
)
from app.queries.sources import last_counts
from app.queries.verdict import rules_from
from app.quoting import quote_input
from app.views.common import current_sources, qd
from app.views.map_query import read_graph
from app.views.services import service_filter_from

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.get("/services")
@require("viewer")
def services():
    """List services with their rolled-up health (DESIGN §5)."""
    flt = service_filter_from(request.args)
    with qd().store.session() as db:
        rows = list_services(db, flt)
        sources = {s.name: s for s in current_sources(db)}
        body = [service_summary_json(s, sources.get(s.source)) for s in rows]
    return jsonify({"services": body})


@bp.get("/services/<path:name>")
@require("viewer")
def service(name: str):
    """Return one service with instances, checks and transitions (DESIGN §5)."""
    ctx = qd()
    with ctx.store.session() as db:
        found = get_service(db, name, ctx.clock())
        if found is None:
            abort(404, f"no service named {quote_input(name)} has been seen")
        sources = {s.name: s for s in current_sources(db)}
        rules = rules_from(ctx.config.verdict)
        body = service_view_json(db, found, sources, ctx.clock(), rules, ctx.config.probes)
    return jsonify(body)


@bp.get("/sources")
@require("viewer")
def sources():
    """Return each configured source's status, last success and last error."""
    with qd().store.session() as db:
        views = current_sources(db)
        counts = last_counts(db, [v.name for v in views])
        leader = leader_view(db)
        return jsonify(
            {
                "sources": [{**v.to_json(), "counts": counts[v.name]} for v in views],
                "leader": leader.to_json() if leader is not None else None,
                "replica": qd().replica or None,
            }
        )


@bp.get("/jobs")
@require("viewer")
def jobs():
    """Return every declared job with its last recorded run."""
    ctx = qd()
    with ctx.store.session() as db:
        views = job_views(db, declared_jobs(ctx), ctx.clock())
    return jsonify({"jobs": [v.to_json() for v in views]})


@bp.get("/map")
@require("viewer")
def dependency_map():
    """Return the dependency map: nodes, edges with evidence and drift (DESIGN §5)."""
    return jsonify(read_graph(request.args))


@bp.get("/openapi.json")
@require("viewer")
def openapi():
    """Serve the OpenAPI description of this API."""
    path = current_app.static_folder + "/openapi.json"
    with open(path, encoding="utf-8") as fh:
        return jsonify(json.load(fh))


@public
def openapi_in_static():
    """Send the shipped file's static address to the API's, so one rule decides who reads it."""
    return redirect(url_for("api.openapi"), code=308)


# The document is a file in static/, which Flask would serve to anyone: the exact rule wins
# over static's `<path:filename>`, so it is signed-in only there as well (docs/api.md).
bp.record_once(
    lambda state: state.app.add_url_rule(
        "/static/openapi.json", "openapi_in_static", openapi_in_static
    )
)
