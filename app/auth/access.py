"""Decide who the caller is and whether their role allows the route, for every request."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import Forbidden, Unauthorized

from app.auth.accounts import (
    AccountError,
    check_name,
    ensure_header_user,
    note_token_use,
    role_at_least,
    token_identity,
    token_use_is_stale,
)
from app.auth.sessions import SessionPolicy, end_session_by_id, find_session, touch_session
from app.config import Config
from app.models import User

F = TypeVar("F", bound=Callable)
log = logging.getLogger(__name__)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The Flask session key that holds the random session id (the signed cookie holds nothing else
# about the person: no user id, no role).
SESSION_KEY = "sid"
# Marks a live stream's re-check of its caller (app.views.live sets it): not user activity, so
# an open tab alone does not hold a session past its idle timeout.
RECHECK_ENVIRON_KEY = "quarterdeck.stream_recheck"
csrf = CSRFProtect()


@dataclass(frozen=True)
class Identity:
    """The caller: a signed-in person, a proxy-vouched person or an API token."""

    name: str
    role: str
    via: str  # session | header | token
    user_id: int | None = None
    session_id: int | None = None  # the store's row of a browser session


def require(role: str) -> Callable[[F], F]:
    """Mark a view as needing at least this role."""

    def mark(view: F) -> F:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def public(view: F) -> F:
    """Mark a view as open to anyone (the sign-in form); the caller is still identified."""
    view.required_role = None  # type: ignore[attr-defined]
    return view


def probe(view: F) -> F:
    """Mark a view as open to anyone and blind to who asks: it never reads the store for it."""
    view.required_role = None  # type: ignore[attr-defined]
    view.anonymous = True  # type: ignore[attr-defined]
    return view


def init_app(app: Flask) -> None:
    """Check every request's identity and role before its view runs."""
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)
    app.before_request(_enforce)


def is_api_request() -> bool:
    """Tell whether the request is for the JSON API (which answers 401, not a redirect)."""
    return request.path.startswith("/api/") or request.path.startswith("/v1/")


def session_policy(config: Config) -> SessionPolicy:
    """Return the browser-session lifetimes the configuration asks for."""
    server = config.server
    return SessionPolicy.from_minutes(server.session_hours * 60, server.session_idle_minutes)


def _enforce():
    g.identity = None
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        # Flask answers 404/405 itself; a signed-in person's error page still shows the nav.
        if not is_api_request():
            g.identity = _identity_if_any()
        return None
    # Static files and probes are answered without looking at who asks (no store access).
    if request.endpoint == "static" or getattr(view, "anonymous", False):
        return None
    # A view that forgot to declare its role is admin-only.
    needed = getattr(view, "required_role", "admin")
    try:
        identity = identify(touch=not request.environ.get(RECHECK_ENVIRON_KEY))
    except Unauthorized:
        if needed is not None:
            raise
        identity = None  # the sign-in form still answers a caller with a stale token
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


def _identity_if_any() -> Identity | None:
    """Return who is asking for a page that does not exist, or None when that cannot be told."""
    try:
        return identify(touch=False)
    except (Unauthorized, Forbidden, SQLAlchemyError):
        return None


def identify(*, touch: bool = True) -> Identity | None:
    """Return who is making the current request, or None for nobody.

    Works in any Flask request context (a live stream re-runs it on its opening request to
    learn whether the caller may still watch). Raises Unauthorized for a bearer token that is
    not valid and Forbidden for a proxy-vouched user who is disabled or whose name is not
    acceptable. `touch=False` reads without counting the request as activity of the session.
    """
    qd = current_app.extensions["quarterdeck"]
    store = qd.store
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        with store.session() as db:
            token = token_identity(db, header[7:].strip())
            if token is None:
                raise Unauthorized("the API token is not valid")
            identity = Identity(name=f"token:{token.name}", role=token.role, via="token")
            record_use = token_use_is_stale(token)
        if record_use and touch:
            _record_activity(lambda: _note_token_use(store, token.id), "token use")
        return identity
    auth = qd.config.auth
    if auth.header and _from_trusted_proxy(auth.trusted_proxies):
        name = request.headers.get(auth.header, "").strip()
        if name:
            return _header_identity(store, name)
    return _session_identity(qd, touch)


def _header_identity(store, name: str) -> Identity:
    try:
        check_name(name)
    except AccountError as exc:
        raise Forbidden(
            f"The sign-in proxy vouched for a user name Quarterdeck does not accept ({exc}). "
            "Ask whoever runs the proxy to map this account to a valid name."
        ) from exc
    with store.session() as db:
        user = db.scalar(select(User).where(User.name == name))
    if user is None:  # first sight: the proxy vouches for a new person
        with store.session(write=True) as db:
            user = ensure_header_user(db, name)
    if user.disabled:
        raise Forbidden("this user is disabled")
    return Identity(name=user.name, role=user.role, via="header", user_id=user.id)


def _session_identity(qd, touch: bool) -> Identity | None:
    secret = session.get(SESSION_KEY)
    if not isinstance(secret, str) or not secret:
        return None
    policy = session_policy(qd.config)
    now = qd.clock()
    with qd.store.session() as db:
        found = find_session(db, secret)
    # Only the id goes: the CSRF token stays, so a form sent after the session ended gets
    # "sign in" rather than "form expired".
    if found is None:  # signed out, or ended by an administrator
        session.pop(SESSION_KEY, None)
        return None
    row, user = found
    if user.disabled or policy.is_over(row, now):
        with qd.store.session(write=True) as db:
            end_session_by_id(db, row.id)
        session.pop(SESSION_KEY, None)
        return None
    if touch and now - row.last_seen_at >= policy.touch_every():
        _record_activity(
            lambda: _touch_session(qd.store, row.id, now, policy.touch_every()), "session activity"
        )
    return Identity(
        name=user.name, role=user.role, via="session", user_id=user.id, session_id=row.id
    )


def client_address() -> str:
    """Return the client's address: the peer's, or from X-Forwarded-For via trusted proxies.

    The header is believed only when the peer is one of `[server] forwarded_allow_ips`; it is
    read from the right, skipping those proxies, so a client cannot choose its own address.
    """
    peer = request.remote_addr or ""
    allowed = current_app.extensions["quarterdeck"].config.server.forwarded_allow_ips
    if not allowed or not _address_in(peer, allowed):
        return peer
    hops = [
        hop.strip()
        for value in request.headers.getlist("X-Forwarded-For")
        for hop in value.split(",")
    ]
    client = peer
    for hop in reversed([h for h in hops if h]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a garbled entry: trust no further than the proxy that passed it on
        client = hop
        if not _address_in(hop, allowed):
            break
    return client


def _from_trusted_proxy(proxies: tuple[str, ...]) -> bool:
    return _address_in(request.remote_addr or "", proxies)


def _address_in(value: str, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return any(address in network for network in _networks(networks))


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
__all__ = [
    "SESSION_KEY",
    "CSRFError",
    "Identity",
    "client_address",
    "csrf",
    "identify",
    "init_app",
    "probe",
    "public",
    "require",
    "safe_next",
]


def _record_activity(write: Callable[[], None], what: str) -> None:
    """Write a note of activity; a store that refuses it must not refuse the request."""
    try:
        write()
    except SQLAlchemyError as exc:
        log.warning("could not record %s: %s", what, type(exc).__name__)


def _note_token_use(store, token_id: int) -> None:
    with store.session(write=True) as db:
        note_token_use(db, token_id)


def _touch_session(store, session_id: int, now, every) -> None:
    with store.session(write=True) as db:
        touch_session(db, session_id, now, every)
