"""Probes and metrics for whoever runs Quarterdeck."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.auth.access import probe
from app.views.common import qd

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@probe
def healthz():
    """Answer while the process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@probe
def readyz():
    """Answer 200 when the store can be reached, 503 otherwise."""
    try:
        qd().store.ping()
    except Exception as exc:  # any driver error means "not ready"
        return jsonify({"status": "unavailable", "reason": type(exc).__name__}), 503
    return jsonify({"status": "ok"})


@bp.get("/metrics")
@probe
def metrics():
    """Expose Quarterdeck's own metrics in Prometheus text format."""
    return Response(
        generate_latest(qd().metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
