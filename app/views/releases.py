"""`GET /api/v1/releases`: each version seen for a service, and the current against the last."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.auth.access import require
from app.queries.releases import compare_releases, list_releases, release_json
from app.views.common import qd, query_number

api_bp = Blueprint("releases_api", __name__, url_prefix="/api/v1")


@api_bp.get("/releases")
@require("viewer")
def releases():
    """List releases newest first; with `?service=` also compare its current and previous."""
    ctx = qd()
    limit = query_number(request.args, "limit", default=100, minimum=1, maximum=5000)
    offset = query_number(request.args, "offset", default=0)
    service = request.args.get("service") or None
    with ctx.store.session() as db:
        rows, total = list_releases(db, service, limit=limit, offset=offset)
        body = {"releases": [release_json(r) for r in rows], "total": total}
        if service is not None:
            body["comparison"] = compare_releases(db, service, ctx.clock())
    return jsonify(body)
