"""Build the Flask application around one Quarterdeck context."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Flask, g, request, url_for

from app import idempotency
from app.auth import access
from app.config import Config
from app.context import Quarterdeck
from app.views import errors

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

# One year, the usual HSTS lifetime; no includeSubDomains: other hosts of the domain are not ours.
HSTS_MAX_AGE_S = 365 * 24 * 3600

# The main sections, in the order the bar shows them. A (label, entries) pair is a group: one
# entry in the bar that opens a short list, so that the bar holds every section at 1280 px.
NAV = (
    ("overview.index", "Overview"),
    ("services.index", "Services"),
    ("map.index", "Map"),
    ("traces.index", "Traces"),
    ("push.index", "Push"),
    ("idempotency.index", "Idempotency"),
    (
        "Operate",
        (
            ("action_pages.index", "Actions"),
            ("runbooks.index", "Runbooks"),
            ("rules.index", "Rules"),
            ("reports.index", "Reports"),
        ),
    ),
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
    idempotency.init_app(app)
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
        "%s is not set: using a random session key, so sign-ins end when this process stops "
        "(and, with several replicas, hold on this replica only)",
        env_name,
    )
    return secrets.token_hex(32)


def _register_blueprints(app: Flask) -> None:
    from app.auth.views import bp as auth_bp
    from app.views.action_pages import bp as action_pages_bp
    from app.views.actions import bp as actions_bp
    from app.views.admin import bp as admin_bp
    from app.views.api import bp as api_bp
    from app.views.idempotency import api_bp as idempotency_api_bp
    from app.views.idempotency import bp as idempotency_bp
    from app.views.live import bp as live_bp
    from app.views.map import bp as map_bp
    from app.views.ops import bp as ops_bp
    from app.views.otlp import bp as otlp_bp
    from app.views.overview import bp as overview_bp
    from app.views.palette import api_bp as palette_api_bp
    from app.views.probes import api_bp as probes_api_bp
    from app.views.push import api_bp as push_api_bp
    from app.views.push import bp as push_bp
    from app.views.releases import api_bp as releases_api_bp
    from app.views.reports import api_bp as reports_api_bp
    from app.views.reports import bp as reports_bp
    from app.views.rules import api_bp as rules_api_bp
    from app.views.rules import bp as rules_bp
    from app.views.runbooks import api_bp as runbooks_api_bp
    from app.views.runbooks import bp as runbooks_bp
    from app.views.services import bp as services_bp
    from app.views.slo import api_bp as slo_api_bp
    from app.views.sources import bp as sources_bp
    from app.views.traces import api_bp as traces_api_bp
    from app.views.traces import bp as traces_bp

    for bp in (
        auth_bp, ops_bp, overview_bp, services_bp, push_bp, sources_bp, admin_bp, live_bp, api_bp,
        push_api_bp, otlp_bp, idempotency_bp, idempotency_api_bp,
        traces_bp, traces_api_bp, map_bp, actions_bp,
        probes_api_bp, action_pages_bp,
        runbooks_api_bp, runbooks_bp, rules_api_bp, rules_bp,
        reports_bp, reports_api_bp,
        palette_api_bp,
        slo_api_bp, releases_api_bp,
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
    """One entry of the bar: a link, or a group of links (``children``) shown as one entry."""

    def __init__(self, label: str, url: str | None, active: bool, children=()) -> None:
        self.label, self.url, self.active = label, url, active
        self.children: list[_NavItem] = list(children)


def _nav_items() -> list[_NavItem]:
    blueprint = (request.endpoint or "").split(".")[0]

    def link(endpoint: str, label: str) -> _NavItem:
        return _NavItem(label, url_for(endpoint), endpoint.split(".")[0] == blueprint)

    items = []
    for first, second in NAV:
        if isinstance(second, tuple):
            children = [link(endpoint, label) for endpoint, label in second]
            items.append(_NavItem(first, None, any(c.active for c in children), children))
        else:
            items.append(link(first, second))
    identity = g.identity
    if identity is not None and identity.role == "admin":
        items.append(link("admin.users", "Users"))
    return items


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
