"""Administration: people and API tokens (admin role only)."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from app.auth.access import require
from app.auth.accounts import AccountError, create_token, create_user
from app.models import ROLES, ApiToken, User, utcnow
from app.views.common import qd

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _page(new_token: str | None = None, error: str | None = None, status: int = 200):
    with qd().store.session() as db:
        users = list(db.scalars(select(User).order_by(User.name)))
        tokens = list(db.scalars(select(ApiToken).order_by(ApiToken.name)))
    return (
        render_template(
            "admin/users.html",
            users=users,
            tokens=tokens,
            roles=ROLES,
            new_token=new_token,
            error=error,
        ),
        status,
    )


@bp.get("/users")
@require("admin")
def users():
    """List people and API tokens."""
    return _page()


@bp.post("/users")
@require("admin")
def add_user():
    """Create a person with a role and an initial password."""
    try:
        with qd().store.session(write=True) as db:
            create_user(
                db,
                (request.form.get("name") or "").strip(),
                request.form.get("role") or "",
                request.form.get("password") or "",
            )
    except AccountError as exc:
        return _page(error=str(exc), status=400)
    flash("User created.", "success")
    return redirect(url_for("admin.users"))


@bp.post("/tokens")
@require("admin")
def add_token():
    """Create an API token and show it this once."""
    try:
        with qd().store.session(write=True) as db:
            token = create_token(
                db,
                (request.form.get("name") or "").strip(),
                request.form.get("role") or "",
                created_by=g.identity.user_id,
            )
    except AccountError as exc:
        return _page(error=str(exc), status=400)
    return _page(new_token=token)


@bp.post("/tokens/<int:token_id>/revoke")
@require("admin")
def revoke_token(token_id: int):
    """Revoke an API token at once."""
    with qd().store.session(write=True) as db:
        token = db.get(ApiToken, token_id)
        if token is not None and token.revoked_at is None:
            token.revoked_at = utcnow()
    flash("Token revoked.", "success")
    return redirect(url_for("admin.users"))
