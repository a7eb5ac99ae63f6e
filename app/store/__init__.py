"""The SQL store: engine, sessions and the write operations on it."""

from app.store.db import Store

__all__ = ["Store"]
