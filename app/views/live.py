"""Server-Sent Events: tell open pages which topics changed so they refresh those parts."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request, stream_with_context

from app.auth.access import require
from app.views.common import qd

bp = Blueprint("live", __name__)
HEARTBEAT_S = 15.0


@bp.get("/events")
@require("viewer")
def events():
    """Stream `change` events with the changed topics until the client goes away."""
    feed = qd().feed
    try:
        after = int(request.headers.get("Last-Event-ID") or feed.seq)
    except ValueError:
        after = feed.seq
    after = min(after, feed.seq)

    def stream():
        nonlocal after
        yield f"retry: 3000\nid: {after}\n: connected\n\n"
        while not feed.closed:
            after, topics = feed.wait(after, HEARTBEAT_S)
            if topics:
                data = json.dumps({"topics": sorted(topics)})
                yield f"id: {after}\nevent: change\ndata: {data}\n\n"
            else:
                # A comment line keeps proxies from closing an idle stream.
                yield ": keep-alive\n\n"

    response = Response(stream_with_context(stream()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
