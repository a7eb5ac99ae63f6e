"""Decide who the caller is and whether their role allows the route, for every request."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select
from werkzeug.exceptions import Forbidden, Unauthorized

from app.auth.accounts import (
    ensure_header_user,
    note_token_use,
    role_at_least,
    session_stamp,
    token_identity,
    token_use_is_stale,
)
from app.models import User

F = TypeVar("F", bound=Callable)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
csrf = CSRFProtect()


@dataclass(frozen=True)
class Identity:
    """The caller: a signed-in person, a proxy-vouched person or an API token."""

    name: str
    role: str
    via: str  # session | header | token
    user_id: int | None = None


def require(role: str) -> Callable[[F], F]:
    """Mark a view as needing at least this role."""

    def mark(view: F) -> F:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def public(view: F) -> F:
    """Mark a view as open to anyone (health probes, metrics, the sign-in form)."""
    view.required_role = None  # type: ignore[attr-defined]
    return view


def init_app(app: Flask) -> None:
    """Check every request's identity and role before its view runs."""
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)
    app.before_request(_enforce)


def is_api_request() -> bool:
    """Tell whether the request is for the JSON API (which answers 401, not a redirect)."""
    return request.path.startswith("/api/") or request.path.startswith("/v1/")


def _enforce():
    g.identity = None
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return None  # Flask answers 404/405 itself
    # Static files (CSS, JS) are public; a view that forgot to declare its role is admin-only.
    needed = None if request.endpoint == "static" else getattr(view, "required_role", "admin")
    try:
        identity = _identify()
    except Unauthorized:
        if needed is not None:
            raise
        identity = None  # a probe with a stale token still gets its answer
    g.identity = identity
    # A bearer token is not sent by browsers on their own, so it needs no CSRF token.
    if (
        request.method in UNSAFE_METHODS
        and not getattr(view, "csrf_exempt", False)
        and (identity is None or identity.via != "token")
    ):
        csrf.protect()
    if needed is None:
        return None
    if identity is None:
        if is_api_request() or request.method not in ("GET", "HEAD"):
            raise Unauthorized("sign in or send an API token")
        return redirect(url_for("auth.login", next=_local_path(request.full_path)))
    if not role_at_least(identity.role, needed):
        raise Forbidden(f"this needs the {needed} role; you are {identity.role}")
    return None


def _identify() -> Identity | None:
    store = current_app.extensions["quarterdeck"].store
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        with store.session() as db:
            token = token_identity(db, header[7:].strip())
            if token is None:
                raise Unauthorized("the API token is not valid")
            identity = Identity(name=f"token:{token.name}", role=token.role, via="token")
            record_use = token_use_is_stale(token)
        if record_use:
            with store.session(write=True) as db:
                note_token_use(db, token.id)
        return identity
    config = current_app.extensions["quarterdeck"].config
    if config.auth.header and _from_trusted_proxy(config.auth.trusted_proxies):
        name = request.headers.get(config.auth.header, "").strip()
        if name:
            with store.session() as db:
                user = db.scalar(select(User).where(User.name == name))
            if user is None:  # first sight: the proxy vouches for a new person
                with store.session(write=True) as db:
                    user = ensure_header_user(db, name)
            if user.disabled:
                raise Forbidden("this user is disabled")
            return Identity(name=user.name, role=user.role, via="header", user_id=user.id)
    user_id = session.get("uid")
    if user_id is None:
        return None
    with store.session() as db:
        user = db.get(User, user_id)
        if user is None or user.disabled or session.get("stamp") != session_stamp(user):
            session.clear()
            return None
        return Identity(name=user.name, role=user.role, via="session", user_id=user.id)


def _from_trusted_proxy(proxies: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in _networks(proxies))


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]):
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _local_path(target: str) -> str:
    """Keep redirects on this site: only a local absolute path is accepted."""
    target = target.rstrip("?")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


safe_next = _local_path
__all__ = ["CSRFError", "Identity", "csrf", "init_app", "public", "require", "safe_next"]
