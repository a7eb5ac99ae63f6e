"""`GET /api/v1/slo`: each service's objectives, error budget left, burn rates and alert state."""

from __future__ import annotations

from collections.abc import Sequence

from flask import Blueprint, jsonify, request
from sqlalchemy.orm import Session

from app.auth.access import require
from app.context import Quarterdeck
from app.queries.slo import SloState, slo_json, slo_prometheus, slo_states
from app.views.common import qd

api_bp = Blueprint("slo_api", __name__, url_prefix="/api/v1")


def current_slo(
    ctx: Quarterdeck, db: Session, services: Sequence[str] | None = None
) -> list[SloState]:
    """Judge the configured SLOs now, asking Prometheus only when one of them reads it."""
    with slo_prometheus(ctx.config, services) as reader:
        return slo_states(db, ctx.config, ctx.clock(), services=services, prometheus=reader)


@api_bp.get("/slo")
@require("viewer")
def slo():
    """Return every configured SLO (of one service with `?service=`), judged now."""
    ctx = qd()
    service = request.args.get("service") or None
    with ctx.store.session() as db:
        states = current_slo(ctx, db, [service] if service else None)
    now = ctx.clock()
    return jsonify({"slo": [slo_json(s, now) for s in states]})
