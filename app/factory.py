"""Build the Flask application around one Quarterdeck context."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Flask, g, request, url_for

from app.auth import access
from app.config import Config
from app.context import Quarterdeck
from app.views import errors

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

# One year, the usual HSTS lifetime; no includeSubDomains: other hosts of the domain are not ours.
HSTS_MAX_AGE_S = 365 * 24 * 3600

NAV = (
    ("overview.index", "Overview"),
    ("services.index", "Services"),
    ("push.index", "Push"),
    ("sources.index", "Sources"),
)


def create_app(config: Config | None = None, qd: Quarterdeck | None = None) -> Flask:
    """Create and configure an instance of the Flask application."""
    if qd is None:
        qd = Quarterdeck.from_config(config or Config())
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    server = qd.config.server
    app.config.update(
        SECRET_KEY=_secret_key(server.secret_key_env),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=server.cookie_secure,
        SESSION_COOKIE_NAME="quarterdeck_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=server.session_hours),
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
    )
    app.json.sort_keys = False  # keep the documented field order
    app.extensions["quarterdeck"] = qd
    access.init_app(app)
    errors.init_app(app)
    _register_blueprints(app)
    _register_template_helpers(app)

    @app.after_request
    def _security_headers(response):
        if server.cookie_secure:
            # Secure cookies mean the site is served over TLS: tell browsers to keep to it.
            response.headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_MAX_AGE_S}")
        if request.endpoint != "static":
            # Pages and API answers show what the caller may see: no browser or proxy keeps them.
            # A view that says otherwise (the event stream's no-cache) keeps its own.
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'",
        )
        return response

    return app


def _secret_key(env_name: str) -> str:
    value = os.environ.get(env_name, "")
    if value:
        return value
    log.warning(
        "%s is not set: using a random session key, so sign-ins end when this process stops",
        env_name,
    )
    return secrets.token_hex(32)


def _register_blueprints(app: Flask) -> None:
    from app.auth.views import bp as auth_bp
    from app.views.admin import bp as admin_bp
    from app.views.api import bp as api_bp
    from app.views.live import bp as live_bp
    from app.views.ops import bp as ops_bp
    from app.views.overview import bp as overview_bp
    from app.views.push import api_bp as push_api_bp
    from app.views.push import bp as push_bp
    from app.views.services import bp as services_bp
    from app.views.sources import bp as sources_bp

    for bp in (
        auth_bp, ops_bp, overview_bp, services_bp, push_bp, sources_bp, admin_bp, live_bp, api_bp,
        push_api_bp,
    ):  # fmt: skip
        app.register_blueprint(bp)


def _register_template_helpers(app: Flask) -> None:
    @app.context_processor
    def _layout():
        identity = getattr(g, "identity", None)
        return {
            "current_user": identity,
            "nav_items": _nav_items() if identity else [],
            "live_url": url_for("live.events") if identity else None,
            "demo_banner": app.config.get("DEMO_BANNER"),
        }

    app.add_template_filter(_isotime, "isotime")
    app.add_template_filter(_ago, "ago")


class _NavItem:
    def __init__(self, label: str, url: str, active: bool) -> None:
        self.label, self.url, self.active = label, url, active


def _nav_items() -> list[_NavItem]:
    blueprint = (request.endpoint or "").split(".")[0]
    entries = list(NAV)
    identity = g.identity
    if identity is not None and identity.role == "admin":
        entries.append(("admin.users", "Users"))
    return [
        _NavItem(label, url_for(endpoint), endpoint.split(".")[0] == blueprint)
        for endpoint, label in entries
    ]


def _isotime(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
