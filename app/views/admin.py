"""Administration: people and API tokens (admin role only)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from app.auth import administration
from app.auth.access import require, session_policy
from app.auth.accounts import AccountError, role_at_least
from app.auth.administration import LastAdminError
from app.auth.sessions import live_session_counts, live_sessions
from app.models import ROLES, ApiToken, User
from app.views.common import qd

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _page(new_token: str | None = None, error: str | None = None, status: int = 200):
    ctx = qd()
    with ctx.store.session() as db:
        users = list(db.scalars(select(User).order_by(User.name)))
        tokens = list(db.scalars(select(ApiToken).order_by(ApiToken.name)))
        sessions = live_session_counts(db, session_policy(ctx.config), ctx.clock())
    return (
        render_template(
            "admin/users.html",
            users=users,
            tokens=tokens,
            sessions=sessions,
            roles=ROLES,
            new_token=new_token,
            error=error,
        ),
        status,
    )


def _user_page(user_id: int, error: str | None = None, status: int = 200):
    ctx = qd()
    with ctx.store.session() as db:
        user = db.get(User, user_id)
        if user is None:
            abort(404, "no such user (it may have been deleted)")
        sessions = live_sessions(db, user.id, session_policy(ctx.config), ctx.clock())
        enabled_admins = db.scalar(
            select(User.id)
            .where(User.role == "admin", User.disabled.is_(False), User.id != user.id)
            .limit(1)
        )
    last_admin = user.role == "admin" and not user.disabled and enabled_admins is None
    return (
        render_template(
            "admin/user.html",
            user=user,
            sessions=sessions,
            roles=ROLES,
            last_admin=last_admin,
            is_self=user.id == g.identity.user_id,
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
        administration.add_user(
            qd(),
            g.identity.name,
            (request.form.get("name") or "").strip(),
            request.form.get("role") or "",
            request.form.get("password") or "",
        )
    except AccountError as exc:
        return _page(error=str(exc), status=400)
    flash("User created.", "success")
    return redirect(url_for("admin.users"))


@bp.get("/users/<int:user_id>")
@require("admin")
def user(user_id: int):
    """Show one person with what an admin can change about them."""
    return _user_page(user_id)


@bp.post("/users/<int:user_id>/role")
@require("admin")
def set_role(user_id: int):
    """Give a person another role; it applies to their next request."""
    name = _name_of(user_id)
    role = request.form.get("role") or ""
    return _apply(
        user_id,
        lambda: administration.set_role(qd(), g.identity.name, name, role),
        f"{name} is now {role}.",
    )


@bp.post("/users/<int:user_id>/disable")
@require("admin")
def disable(user_id: int):
    """Disable a person and end their sessions."""
    name = _name_of(user_id)
    return _apply(
        user_id,
        lambda: administration.set_disabled(qd(), g.identity.name, name, True),
        f"{name} is disabled and signed out everywhere.",
    )


@bp.post("/users/<int:user_id>/enable")
@require("admin")
def enable(user_id: int):
    """Let a disabled person sign in again."""
    name = _name_of(user_id)
    return _apply(
        user_id,
        lambda: administration.set_disabled(qd(), g.identity.name, name, False),
        f"{name} can sign in again.",
    )


@bp.post("/users/<int:user_id>/password")
@require("admin")
def reset_password(user_id: int):
    """Set a new password and end the person's other sessions."""
    name = _name_of(user_id)
    password = request.form.get("password") or ""
    if password != (request.form.get("password_again") or ""):
        return _user_page(user_id, error="password: the two entries differ", status=400)
    keep = g.identity.session_id if g.identity.user_id == user_id else None
    return _apply(
        user_id,
        lambda: administration.reset_password(
            qd(), g.identity.name, name, password, keep_session=keep
        ),
        f"New password set for {name}; their other sessions have ended.",
    )


@bp.post("/users/<int:user_id>/sessions/end")
@require("admin")
def end_sessions(user_id: int):
    """Sign a person out everywhere."""
    name = _name_of(user_id)
    return _apply(
        user_id,
        lambda: administration.end_sessions(qd(), g.identity.name, name),
        f"{name} is signed out everywhere.",
    )


@bp.post("/users/<int:user_id>/delete")
@require("admin")
def delete(user_id: int):
    """Delete a person, once their name has been typed to confirm."""
    name = _name_of(user_id)
    if (request.form.get("confirm") or "").strip() != name:
        return _user_page(
            user_id, error=f"confirm: type the user name {name} to delete this user", status=400
        )
    return _apply(
        user_id,
        lambda: administration.delete_user(qd(), g.identity.name, name),
        f"{name} is deleted.",
        gone=True,
    )


@bp.post("/tokens")
@require("admin")
def add_token():
    """Create an API token and show it this once."""
    try:
        token = administration.add_token(
            qd(),
            g.identity.name,
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
    administration.revoke_token(qd(), g.identity.name, token_id, qd().clock())
    flash("Token revoked.", "success")
    return redirect(url_for("admin.users"))


def _name_of(user_id: int) -> str:
    with qd().store.session() as db:
        name = db.scalar(select(User.name).where(User.id == user_id))
    if name is None:
        abort(404, "no such user (it may have been deleted)")
    return name


def _apply(user_id: int, change, done: str, *, gone: bool = False):
    try:
        change()
    except LastAdminError as exc:
        return _user_page(user_id, error=str(exc), status=409)
    except AccountError as exc:
        return _user_page(user_id, error=str(exc), status=400)
    flash(done, "success")
    # A change to oneself may end one's own session or admin rights: go where one still may.
    with qd().store.session() as db:
        me = db.get(User, g.identity.user_id) if g.identity.user_id is not None else None
    if g.identity.user_id is not None and (
        me is None or me.disabled or not role_at_least(me.role, "admin")
    ):
        return redirect(url_for("overview.index"))
    if gone:
        return redirect(url_for("admin.users"))
    return redirect(url_for("admin.user", user_id=user_id))
