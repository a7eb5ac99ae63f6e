"""Managing people and tokens: each change is audited, takes effect on the user's next request,
and tells open live streams to check their caller again (feed topic "auth").

Every function here commits its own unit of work; `actor` names who asked (a signed-in admin,
`token:<name>`, or `cli:<login>`). The audit log (logger `quarterdeck.audit`) says who did what
to whom and never carries a password or a token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.accounts import (
    AccountError,
    check_role,
    create_token,
    create_user,
    set_password,
)
from app.auth.sessions import end_user_sessions
from app.models import ApiToken, User
from app.quoting import quote_input

audit = logging.getLogger("quarterdeck.audit")
AUTH_TOPIC = "auth"


class LastAdminError(AccountError):
    """Refused: the change would leave no enabled admin to manage users."""


@dataclass(frozen=True)
class UserSummary:
    """One user as `quarterdeck user list` and the Users page show them."""

    id: int
    name: str
    role: str
    disabled: bool
    created_at: datetime
    last_sign_in_at: datetime | None


def add_user(qd, actor: str, name: str, role: str, password: str) -> None:
    """Create a user."""
    with qd.store.session(write=True) as db:
        create_user(db, name, role, password)
    _changed(qd, "user add: %s created %s with role %s", actor, name, role)


def set_role(qd, actor: str, name: str, role: str) -> str:
    """Give a user another role at once; return the role they had."""
    check_role(role)
    with qd.store.session(write=True) as db:
        admins = _lock_enabled_admins(db)
        user = _load(db, name)
        before = user.role
        if before == role:
            return before
        if role != "admin":
            _keep_an_admin(admins, user, actor, f"making {_them(user, actor)} {role}")
        user.role = role
    _changed(qd, "user set-role: %s changed %s from %s to %s", actor, name, before, role)
    return before


def set_disabled(qd, actor: str, name: str, disabled: bool) -> int:
    """Disable (ending their sessions) or enable a user; return how many sessions ended."""
    ended = 0
    with qd.store.session(write=True) as db:
        admins = _lock_enabled_admins(db)
        user = _load(db, name)
        if user.disabled == disabled:
            return 0
        if disabled:
            _keep_an_admin(admins, user, actor, f"disabling {_them(user, actor)}")
            ended = end_user_sessions(db, user.id)
        user.disabled = disabled
    verb = "disable" if disabled else "enable"
    _changed(qd, "user %s: %s %sd %s (%d sessions ended)", verb, actor, verb, name, ended)
    return ended


def reset_password(
    qd, actor: str, name: str, password: str, *, keep_session: int | None = None
) -> int:
    """Give a user a new password and end their sessions (but `keep_session`); return how many."""
    with qd.store.session(write=True) as db:
        user = _load(db, name)
        set_password(user, password)
        ended = end_user_sessions(db, user.id, keep=keep_session)
    _changed(
        qd, "user passwd: %s set a new password for %s (%d sessions ended)", actor, name, ended
    )
    return ended


def delete_user(qd, actor: str, name: str) -> None:
    """Delete a user and end their sessions."""
    with qd.store.session(write=True) as db:
        admins = _lock_enabled_admins(db)
        user = _load(db, name)
        _keep_an_admin(admins, user, actor, f"deleting {_them(user, actor)}")
        ended = end_user_sessions(db, user.id)
        db.delete(user)
    _changed(qd, "user delete: %s deleted %s (%d sessions ended)", actor, name, ended)


def end_sessions(qd, actor: str, name: str) -> int:
    """Sign a user out everywhere; return how many sessions ended."""
    with qd.store.session(write=True) as db:
        user = _load(db, name)
        ended = end_user_sessions(db, user.id)
    _changed(qd, "user sign-out: %s ended %d sessions of %s", actor, ended, name)
    return ended


def add_token(qd, actor: str, name: str, role: str, created_by: int | None = None) -> str:
    """Create an API token and return it (the only copy)."""
    with qd.store.session(write=True) as db:
        token = create_token(db, name, role, created_by=created_by)
    _changed(qd, "token create: %s created token %s with role %s", actor, name, role)
    return token


def revoke_token(qd, actor: str, token_id: int, now: datetime) -> str | None:
    """Revoke an API token at once; return its name, or None if it was already gone."""
    with qd.store.session(write=True) as db:
        token = db.get(ApiToken, token_id)
        if token is None or token.revoked_at is not None:
            return None
        token.revoked_at = now
        name = token.name
    _changed(qd, "token revoke: %s revoked token %s", actor, name)
    return name


def list_users(qd) -> list[UserSummary]:
    """Return every user, by name."""
    with qd.store.session() as db:
        return [
            UserSummary(u.id, u.name, u.role, u.disabled, u.created_at, u.last_sign_in_at)
            for u in db.scalars(select(User).order_by(User.name))
        ]


def note_sign_out(qd, name: str, address: str) -> None:
    """Audit a sign-out and tell open streams of that session to check again."""
    _changed(qd, "sign-out: %s signed out from %s", name, address)


def _changed(qd, message: str, *args) -> None:
    audit.info(message, *args)
    qd.feed.publish({AUTH_TOPIC})


def _load(db: Session, name: str) -> User:
    user = db.scalar(select(User).where(User.name == name).with_for_update())
    if user is None:
        raise AccountError(f"no user named {quote_input(name)}")
    return user


def _lock_enabled_admins(db: Session) -> list[int]:
    # Locked in id order, so two admins demoting each other at once wait instead of deadlocking.
    query = (
        select(User.id)
        .where(User.role == "admin", User.disabled.is_(False))
        .order_by(User.id)
        .with_for_update()
    )
    return list(db.scalars(query))


def _keep_an_admin(admins: list[int], user: User, actor: str, what: str) -> None:
    if user.id in admins and len(admins) == 1:
        who = "You are" if user.name == actor else f"{user.name} is"
        raise LastAdminError(
            f"{who} the last enabled admin: {what} would leave nobody able to manage users. "
            "Make another user an admin first."
        )


def _them(user: User, actor: str) -> str:
    return "yourself" if user.name == actor else user.name
