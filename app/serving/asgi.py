"""The ASGI face of the Flask app: pages and API in a bounded thread pool, streams on the loop."""

from __future__ import annotations

from a2wsgi import WSGIMiddleware
from flask import Flask

from app.serving.streams import StreamHub
from app.views.live import EVENTS_PATH


class QuarterdeckASGI:
    """Route `GET /events` to the stream hub and every other request to the Flask app."""

    def __init__(self, app: Flask, threads: int) -> None:
        self.wsgi = WSGIMiddleware(app, workers=threads)
        qd = app.extensions["quarterdeck"]
        self.streams = StreamHub(
            app,
            qd.feed,
            self.wsgi.executor,
            recheck_s=qd.config.server.stream_recheck_s,
            recheck_concurrency=max(1, threads // 4),
        )

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http" and scope["method"] == "GET" and scope["path"] == EVENTS_PATH:
            await self.streams.serve(scope, receive, send)
        else:
            await self.wsgi(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.streams.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.streams.stop()
                self.wsgi.executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
