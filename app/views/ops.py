"""Probes and metrics for whoever runs Quarterdeck."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.auth.access import probe
from app.queries.sources import iso
from app.store.db import SQLITE_BUSY_TIMEOUT_MS
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
    """Answer 200 when the store takes a write, 503 with the reason when it does not.

    A write lock held by someone else is "busy" (200) until it has been held, probe after
    probe, longer than the store's own writers wait for it; then it is not ready either.
    """
    store = qd().store
    check = store.write_probe.check()
    body: dict = {"status": "ok"}
    if check.state == "busy" and check.busy_since is not None:
        busy_s = (check.checked_at - check.busy_since).total_seconds()
        if busy_s <= SQLITE_BUSY_TIMEOUT_MS / 1000:
            body = {"status": "busy", "reason": check.reason}
        else:
            reason = f"{check.reason} (busy at every probe for {busy_s:.0f} s)"
            body = {"status": "unavailable", "reason": reason}
    elif not check.writable:
        body = {"status": "unavailable", "reason": check.reason}
    body["store"] = {"backend": store.dialect, "state": check.state}
    if check.busy_since is not None:
        body["store"]["busy_since"] = iso(check.busy_since)
    return jsonify(body), 503 if body["status"] == "unavailable" else 200


@bp.get("/metrics")
@probe
def metrics():
    """Expose Quarterdeck's own metrics in Prometheus text format."""
    return Response(
        generate_latest(qd().metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
