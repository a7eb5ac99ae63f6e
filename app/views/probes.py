"""`GET /api/v1/probes`: each business availability probe's state, last result and history."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, jsonify, request

from app.auth.access import require
from app.queries.probes import probes_json
from app.views.common import qd, query_number

api_bp = Blueprint("probes_api", __name__, url_prefix="/api/v1")

# A year of hours; the results table keeps [retention] samples_d days anyway.
MAX_WINDOW_H = 8760


@api_bp.get("/probes")
@require("viewer")
def probes():
    """Return every configured probe: state, last result, availability over `window_h` hours."""
    ctx = qd()
    window_h = query_number(request.args, "window_h", default=24, minimum=1, maximum=MAX_WINDOW_H)
    service = request.args.get("service") or None
    with ctx.store.session() as db:
        body = probes_json(
            db, ctx.config.probes, ctx.clock(), timedelta(hours=window_h), service=service
        )
    return jsonify({"probes": body})
