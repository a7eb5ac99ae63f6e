"""Server-Sent Events: tell open pages which topics changed so they refresh those parts."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request, stream_with_context

from app.auth.access import require
from app.views.common import is_ascii_number, qd

bp = Blueprint("live", __name__)
HEARTBEAT_S = 15.0


@bp.get("/events")
@require("viewer")
def events():
    """Stream `change` events with the changed topics until the client goes away."""
    feed = qd().feed
    after, missed = _resume_point(feed, request.headers.get("Last-Event-ID", ""))

    def stream():
        nonlocal after
        yield f"retry: 3000\nid: {feed.epoch}.{after}\n: connected\n\n"
        if missed:
            # Reconnected across a restart: what changed meanwhile is unknown, so all of it.
            yield _change(feed.epoch, after, {"*"})
        while not feed.closed:
            after, topics = feed.wait(after, HEARTBEAT_S)
            if topics:
                yield _change(feed.epoch, after, topics)
            else:
                # A comment line keeps proxies from closing an idle stream.
                yield ": keep-alive\n\n"

    response = Response(stream_with_context(stream()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _resume_point(feed, last_event_id: str) -> tuple[int, bool]:
    """Where a (re)connecting stream starts, and whether it missed changes it cannot replay.

    Event ids are `<feed epoch>.<seq>`: an id from this process resumes after its seq (the
    feed replays what it still keeps); an id from an earlier process means a restart.
    """
    if not last_event_id:
        return feed.seq, False
    epoch, _, seq = last_event_id.partition(".")
    if epoch != feed.epoch or not is_ascii_number(seq) or len(seq) > 18:
        return feed.seq, True
    return min(int(seq), feed.seq), False


def _change(epoch: str, seq: int, topics) -> str:
    data = json.dumps({"topics": sorted(topics)})
    return f"id: {epoch}.{seq}\nevent: change\ndata: {data}\n\n"
