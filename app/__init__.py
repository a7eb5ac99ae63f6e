"""Quarterdeck: the on-call console for a microservice fleet."""

from app.factory import create_app

__all__ = ["create_app"]
