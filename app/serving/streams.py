"""Live streams on the event loop: one coroutine per open `/events`, no thread held.

Each stream is first sent through the Flask app in the worker pool, so the app's own access
check, resume point and caps decide (one code path for auth). The accepted stream then waits
on the ChangeFeed, which wakes the loop with `call_soon_threadsafe`. Streams of one caller
(the same credentials) form a group whose request is sent through the app again when the feed
publishes "auth" and every `stream_recheck_s` otherwise; a refusal ends every stream of it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
from concurrent.futures import Executor
from dataclasses import dataclass, field

from a2wsgi.wsgi import build_environ
from flask import Flask

from app.live import ChangeFeed
from app.views.live import (
    AUTH_TOPIC,
    HEARTBEAT_S,
    KEEPALIVE,
    STREAM_HOST,
    STREAM_TICKET,
    StreamTicket,
    end_frame,
    recheck_caller,
    recheck_environ,
)

log = logging.getLogger(__name__)
WRITE_TIMEOUT_S = 30.0  # a client that reads nothing for this long is dropped
SHUTDOWN_WAIT_S = 3.0
_NOT_GROUPED = frozenset({b"last-event-id"})  # headers that do not change who the caller is


@dataclass(eq=False)
class _Stream:
    ticket: StreamTicket
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    gone: bool = False
    end_reason: str = ""


@dataclass(eq=False)
class _Caller:
    """Streams opened with the same credentials, re-checked together."""

    key: tuple
    environ: dict
    check_at: float
    streams: set[_Stream] = field(default_factory=set)
    checking: bool = False
    again: bool = False


class StreamHub:
    """Carries every open live stream of one server on its event loop."""

    def __init__(
        self,
        app: Flask,
        feed: ChangeFeed,
        executor: Executor,
        *,
        recheck_s: float,
        recheck_concurrency: int = 4,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.app = app
        self.feed = feed
        self.executor = executor
        self.recheck_s = recheck_s
        self.heartbeat_s = heartbeat_s
        self._recheck_concurrency = recheck_concurrency
        self._streams: set[_Stream] = set()
        self._callers: dict[tuple, _Caller] = {}
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen = feed.seq
        self._woken = False
        self._unsubscribe = None
        self._checker: asyncio.Task | None = None
        self._check_now: asyncio.Event | None = None

    # -- lifecycle (on the loop) ------------------------------------------------------------

    async def start(self) -> None:
        """Start listening to the feed and re-checking callers."""
        self._loop = asyncio.get_running_loop()
        self._check_now = asyncio.Event()
        self._seen = self.feed.seq
        self._unsubscribe = self.feed.subscribe(self._feed_moved_threadsafe)
        self._checker = asyncio.create_task(self._recheck_loop(), name="stream-rechecks")

    async def close_streams(self, reason: str = "shutdown", wait_s: float = SHUTDOWN_WAIT_S):
        """End every open stream (with a last `end` event) and refuse new ones."""
        self._closing = True
        for stream in list(self._streams):
            self._end(stream, reason)
        deadline = asyncio.get_running_loop().time() + wait_s
        while self._streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop listening and re-checking (after close_streams)."""
        if self._unsubscribe:
            self._unsubscribe()
        if self._checker:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)

    @property
    def open_count(self) -> int:
        """How many streams this hub carries now."""
        return len(self._streams)

    # -- one stream -------------------------------------------------------------------------

    async def serve(self, scope, receive, send) -> None:
        """Answer one `GET /events`: through the app first, then on the loop if accepted."""
        if self._closing:
            await _answer(send, 503, [(b"retry-after", b"5")], b"shutting down\n")
            return
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, io.BytesIO(b""))  # type: ignore[arg-type]
        pristine = recheck_environ(environ)
        environ[STREAM_HOST] = True
        status, headers, body = await loop.run_in_executor(
            self.executor, _call_app, self.app, environ
        )
        ticket: StreamTicket | None = environ.pop(STREAM_TICKET, None)
        # The environ holds the whole Flask request: do not keep it alive for hours per stream.
        del environ
        if ticket is None or status != 200 or self._closing:
            if ticket is not None:
                ticket.slot.release()
                status, headers, body = 503, [(b"retry-after", b"5")], b"shutting down\n"
            await _answer(send, status, headers, body)
            return
        # The body is streamed from here on: the length the app computed for "" does not apply.
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        stream = _Stream(ticket)
        caller = self._join(scope, pristine, stream)
        watcher = asyncio.create_task(_watch_disconnect(receive, stream))
        try:
            await self._pump(stream, send, headers)
        finally:
            watcher.cancel()
            ticket.slot.release()
            self._leave(caller, stream)

    async def _pump(self, stream: _Stream, send, headers) -> None:
        ticket = stream.ticket
        start = {"type": "http.response.start", "status": 200, "headers": headers}
        if not await _write(send, start):
            return
        if not await _body(send, ticket.opening()):
            return
        stream.wake.set()  # a resumed stream replays what it missed at once
        while True:
            try:
                async with asyncio.timeout(self.heartbeat_s):
                    await stream.wake.wait()
                beat = False
            except TimeoutError:
                beat = True
            stream.wake.clear()
            if stream.gone:
                return
            if stream.end_reason:
                if await _body(send, end_frame(stream.end_reason)):
                    await _write(send, {"type": "http.response.body", "body": b""})
                return
            frame, _topics = ticket.next_frame()
            if (frame or beat) and not await _body(send, frame or KEEPALIVE):
                return

    def _join(self, scope, environ: dict, stream: _Stream) -> _Caller:
        key = _caller_key(scope)
        caller = self._callers.get(key)
        if caller is None:
            now = asyncio.get_running_loop().time()
            # Spread the first checks so that a room of screens is not re-checked in lockstep.
            first = now + self.recheck_s * random.uniform(0.5, 1.0)
            caller = self._callers[key] = _Caller(key, environ, first)
        caller.streams.add(stream)
        self._streams.add(stream)
        return caller

    def _leave(self, caller: _Caller, stream: _Stream) -> None:
        self._streams.discard(stream)
        caller.streams.discard(stream)
        if not caller.streams and self._callers.get(caller.key) is caller:
            del self._callers[caller.key]

    def _end(self, stream: _Stream, reason: str) -> None:
        stream.end_reason = stream.end_reason or reason
        stream.wake.set()

    # -- the feed ---------------------------------------------------------------------------

    def _feed_moved_threadsafe(self) -> None:
        # Called in the publishing thread: one wake-up of the loop per burst of changes.
        if self._woken or self._loop is None:
            return
        self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._feed_moved)
        except RuntimeError:  # the loop has closed: nothing left to wake
            self._woken = False

    def _feed_moved(self) -> None:
        self._woken = False
        self._seen, topics = self.feed.changes_since(self._seen)
        if self.feed.closed:
            for stream in list(self._streams):
                self._end(stream, "shutdown")
            return
        if AUTH_TOPIC in topics or "*" in topics:
            for caller in self._callers.values():
                self._due_now(caller)
            if self._check_now:
                self._check_now.set()
        for stream in self._streams:
            stream.wake.set()

    # -- re-checking callers ----------------------------------------------------------------

    def _due_now(self, caller: _Caller) -> None:
        if caller.checking:
            caller.again = True  # the check under way may have read the old state
        else:
            caller.check_at = 0.0

    async def _recheck_loop(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._recheck_concurrency)
        tasks: set[asyncio.Task] = set()
        assert self._check_now is not None
        while True:
            now = loop.time()
            next_at = now + self.recheck_s
            for caller in list(self._callers.values()):
                if caller.checking:
                    continue
                if caller.check_at <= now:
                    caller.checking = True
                    task = asyncio.create_task(self._recheck(caller, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    next_at = min(next_at, caller.check_at)
            try:
                async with asyncio.timeout(max(0.05, next_at - loop.time())):
                    await self._check_now.wait()
            except TimeoutError:
                pass
            self._check_now.clear()

    async def _recheck(self, caller: _Caller, slots: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        reason = None
        try:
            async with slots:
                reason = await loop.run_in_executor(
                    self.executor, recheck_caller, self.app, caller.environ
                )
        except Exception:  # the stream stays: a failed check proves nothing either way
            log.warning("re-checking a live stream's caller failed", exc_info=True)
        finally:
            caller.checking = False
            caller.check_at = 0.0 if caller.again else loop.time() + self.recheck_s
            caller.again = False
            if self._check_now:
                self._check_now.set()
        if reason:
            ended = self.app.extensions["quarterdeck"].metrics.live_streams_ended.labels(reason)
            for stream in list(caller.streams):
                ended.inc()
                self._end(stream, reason)


def _caller_key(scope) -> tuple:
    """Who a stream's request says the caller is: its headers (cookie, token) and address."""
    headers = tuple(sorted((k, v) for k, v in scope.get("headers", ()) if k not in _NOT_GROUPED))
    client = scope.get("client") or ("", 0)
    return (client[0], headers)


def _call_app(app: Flask, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run the Flask app on one request in this (worker) thread; return the whole answer."""
    answer: dict = {}

    def start_response(status: str, headers, exc_info=None):
        answer["status"] = int(status.split(" ", 1)[0])
        answer["headers"] = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], body


async def _answer(send, status: int, headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _body(send, data: bytes) -> bool:
    return await _write(send, {"type": "http.response.body", "body": data, "more_body": True})


async def _write(send, message) -> bool:
    """Send one message; False when the client is gone or stopped reading."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await send(message)
    except (TimeoutError, OSError):
        return False
    return True


async def _watch_disconnect(receive, stream: _Stream) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.gone = True
            stream.wake.set()
            return
