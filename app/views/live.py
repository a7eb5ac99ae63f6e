"""Server-Sent Events: tell open pages which topics changed so they refresh those parts.

The view authenticates the request (like every route), resumes from `Last-Event-ID` and takes
a place under the stream caps. Under `quarterdeck serve` the stream host (app/serving) then
carries the stream on its event loop; under any other WSGI server this thread carries it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, g, render_template, request

from app.auth.access import require
from app.live import ChangeFeed, OpenStreams, StreamLimitReached, StreamSlot
from app.views.common import is_ascii_number, qd

bp = Blueprint("live", __name__)
EVENTS_PATH = "/events"
HEARTBEAT_S = 15.0
RETRY_AFTER_S = 30
AUTH_TOPIC = "auth"

# WSGI environ keys between the view and a stream host; a client cannot set environ keys.
STREAM_HOST = "quarterdeck.stream_host"  # set by the host: it will carry an accepted stream
STREAM_TICKET = "quarterdeck.stream_ticket"  # set by the view: the stream it accepted
RECHECK = "quarterdeck.stream_recheck"  # set by whoever re-checks an open stream's caller

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@bp.record_once
def _count_streams(state) -> None:
    qd = state.app.extensions["quarterdeck"]
    server = qd.config.server
    streams = OpenStreams(per_caller=server.streams_per_user, total=server.max_streams)
    state.app.extensions["quarterdeck.streams"] = streams
    qd.metrics.live_streams.set_function(streams.count)


def open_streams(app: Flask | None = None) -> OpenStreams:
    """Return the app's count of open live streams."""
    return (app or current_app).extensions["quarterdeck.streams"]


@dataclass
class StreamTicket:
    """An accepted stream: where it starts, whether it missed changes, its place under the caps."""

    feed: ChangeFeed
    after: int
    missed: bool
    slot: StreamSlot

    def opening(self) -> bytes:
        """The first frames: reconnect delay, the current id, and "*" after a restart."""
        text = f"retry: 3000\nid: {self.feed.epoch}.{self.after}\n: connected\n\n"
        if self.missed:
            # Reconnected across a restart: what changed meanwhile is unknown, so all of it.
            text += change_frame(self.feed.epoch, self.after, {"*"})
        return text.encode()

    def next_frame(self) -> tuple[bytes, frozenset[str]]:
        """The change frame for what changed since the last one (b"" if nothing) and its topics."""
        self.after, topics = self.feed.changes_since(self.after)
        if not topics:
            return b"", topics
        return change_frame(self.feed.epoch, self.after, topics).encode(), topics


@bp.get(EVENTS_PATH)
@require("viewer")
def events():
    """Stream `change` events with the changed topics until the client goes away."""
    if request.environ.get(RECHECK):
        return Response(status=204)  # the access check in front of every view let it through
    if request.method == "HEAD":
        return Response(status=200, mimetype="text/event-stream", headers=STREAM_HEADERS)
    feed = qd().feed
    after, missed = _resume_point(feed, request.headers.get("Last-Event-ID", ""))
    try:
        slot = open_streams().open(g.identity.name)
    except StreamLimitReached as exc:
        limit = "streams_per_user" if exc.scope == "caller" else "max_streams"
        qd().metrics.live_streams_refused.labels(limit).inc()
        return _refusal(exc, g.identity.name)
    ticket = StreamTicket(feed=feed, after=after, missed=missed, slot=slot)
    if request.environ.get(STREAM_HOST):
        request.environ[STREAM_TICKET] = ticket
        return Response(status=200, mimetype="text/event-stream", headers=STREAM_HEADERS)
    app = current_app._get_current_object()
    probe = recheck_environ(request.environ)
    recheck_s = qd().config.server.stream_recheck_s
    ended = qd().metrics.live_streams_ended
    body = _stream_in_this_thread(ticket, lambda: recheck_caller(app, probe), recheck_s, ended)
    response = Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS)
    response.call_on_close(slot.release)
    return response


def _refusal(exc: StreamLimitReached, caller: str) -> Response:
    if exc.scope == "caller":
        message = (
            f"{caller} already has {exc.limit} live streams open here (the [server] "
            "streams_per_user limit). Close some tabs; the others keep updating."
        )
    else:
        message = f"This server already carries {exc.limit} live streams ([server] max_streams)."
    page = render_template(
        "errors/error.html", status=429, title="Too many live streams", message=message
    )
    response = Response(page, status=429, mimetype="text/html")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _stream_in_this_thread(
    ticket: StreamTicket, recheck: Callable[[], str | None], recheck_s: float, ended
) -> Iterator[bytes]:
    """The stream for a WSGI server that gives each request a thread (Flask's own)."""
    feed = ticket.feed
    try:
        yield ticket.opening()
        check_at = time.monotonic() + recheck_s
        beat_at = time.monotonic() + HEARTBEAT_S
        while not feed.closed:
            now = time.monotonic()
            feed.wait(ticket.after, max(0.0, min(check_at, beat_at) - now))
            frame, topics = ticket.next_frame()
            if AUTH_TOPIC in topics or time.monotonic() >= check_at:
                check_at = time.monotonic() + recheck_s
                reason = recheck()
                if reason:
                    ended.labels(reason).inc()
                    yield end_frame(reason)
                    return
            if frame:
                yield frame
            elif time.monotonic() >= beat_at:
                yield KEEPALIVE
            else:
                continue
            beat_at = time.monotonic() + HEARTBEAT_S
    finally:
        ticket.slot.release()


def recheck_environ(environ: dict) -> dict:
    """A copy of a stream's request that can be sent through the app again to re-check it."""
    probe = {k: v for k, v in environ.items() if k.isupper() or k in _WSGI_KEYS}
    # A proxy-fixing middleware rewrote these in place: give it the request as it came.
    probe.update(environ.get("werkzeug.proxy_fix.orig", {}))
    return probe


_WSGI_KEYS = ("wsgi.version", "wsgi.url_scheme", "wsgi.errors", "wsgi.multithread")


def recheck_caller(app: Flask, environ: dict) -> str | None:
    """Send a stream's request through the app's own access check again.

    Returns None while the caller may still stream, else why not ("signed-out" or
    "forbidden"). A server error (the store is down) keeps the stream: it proves nothing.
    """
    probe = dict(environ, **{RECHECK: True, "wsgi.input": io.BytesIO(b"")})
    probe["wsgi.multiprocess"] = probe["wsgi.run_once"] = False
    probe["REQUEST_METHOD"] = "GET"
    statuses: list[int] = []

    def start_response(status: str, headers, exc_info=None):
        statuses.append(int(status.split(" ", 1)[0]))
        return lambda data: None

    body = app(probe, start_response)
    try:
        for _ in body:
            pass
    finally:
        getattr(body, "close", lambda: None)()
    status = statuses[-1] if statuses else 500
    if status in (301, 302, 303, 307, 308, 401):
        return "signed-out"
    if status == 403:
        return "forbidden"
    return None


def _resume_point(feed: ChangeFeed, last_event_id: str) -> tuple[int, bool]:
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


def change_frame(epoch: str, seq: int, topics) -> str:
    """One `change` event naming the topics."""
    data = json.dumps({"topics": sorted(topics)})
    return f"id: {epoch}.{seq}\nevent: change\ndata: {data}\n\n"


def end_frame(reason: str) -> bytes:
    """The last event of a stream the server ends, saying why."""
    return f"event: end\ndata: {json.dumps({'reason': reason})}\n\n".encode()


# A comment line keeps proxies from closing an idle stream.
KEEPALIVE = b": keep-alive\n\n"
