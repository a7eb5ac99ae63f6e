"""Serving Quarterdeck over HTTP: uvicorn, the Flask app in a bounded pool, streams on the loop."""

from app.serving.process import serve_quarterdeck
from app.serving.server import Server

__all__ = ["Server", "serve_quarterdeck"]
