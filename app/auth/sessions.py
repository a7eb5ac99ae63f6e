"""Browser sessions kept in the store: the cookie carries a random id, the store only its digest.

A session ends when it is signed out, when its absolute lifetime from sign-in runs out, when it
has been idle too long, or when its user is disabled, deleted or given a new password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.models import User, UserSession

# last_seen_at is written at most this often per session, so a page view stays a read.
TOUCH_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class SessionPolicy:
    """How long a browser session may live: from sign-in, and without a request."""

    lifetime: timedelta
    idle: timedelta | None  # None: no idle timeout

    @classmethod
    def from_minutes(cls, lifetime_minutes: int, idle_minutes: int) -> SessionPolicy:
        """Build the policy from `[server] session_hours` × 60 and `session_idle_minutes`."""
        idle = timedelta(minutes=idle_minutes) if idle_minutes else None
        return cls(lifetime=timedelta(minutes=lifetime_minutes), idle=idle)

    def touch_every(self) -> timedelta:
        """How stale last_seen_at may get before a request rewrites it."""
        if self.idle is None:
            return TOUCH_PRECISION
        return min(TOUCH_PRECISION, self.idle / 4)

    def is_over(self, row: UserSession, now: datetime) -> bool:
        """Tell whether a session has ended by age or by idleness."""
        if row.expires_at <= now:
            return True
        return self.idle is not None and row.last_seen_at + self.idle <= now


def digest(secret: str) -> str:
    """Return the stored form of a session id (random, so SHA-256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(
    db: Session,
    user: User,
    policy: SessionPolicy,
    now: datetime,
    *,
    address: str = "",
    user_agent: str = "",
) -> str:
    """Record a new sign-in and return the random id for the cookie (the only copy)."""
    secret = secrets.token_urlsafe(32)
    db.add(
        UserSession(
            user_id=user.id,
            secret_hash=digest(secret),
            created_at=now,
            last_seen_at=now,
            expires_at=now + policy.lifetime,
            address=address[:64],
            user_agent=user_agent[:200],
        )
    )
    db.flush()
    return secret


def find_session(db: Session, secret: str) -> tuple[UserSession, User] | None:
    """Return the session a cookie's id names, with its user, however old it is."""
    row = db.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.secret_hash == digest(secret))
    ).first()
    return None if row is None else (row[0], row[1])


def touch_session(db: Session, session_id: int, now: datetime, every: timedelta) -> None:
    """Move a session's last_seen_at to now, unless it moved within `every`."""
    db.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.last_seen_at < now - every)
        .values(last_seen_at=now)
    )


def end_session(db: Session, secret: str) -> bool:
    """End the session a cookie's id names; tell whether there was one."""
    result = db.execute(delete(UserSession).where(UserSession.secret_hash == digest(secret)))
    return bool(result.rowcount)


def end_session_by_id(db: Session, session_id: int) -> None:
    """End one session by its row id."""
    db.execute(delete(UserSession).where(UserSession.id == session_id))


def end_user_sessions(db: Session, user_id: int, *, keep: int | None = None) -> int:
    """End every session of a user (except the one with id `keep`); return how many."""
    statement = delete(UserSession).where(UserSession.user_id == user_id)
    if keep is not None:
        statement = statement.where(UserSession.id != keep)
    return db.execute(statement).rowcount or 0


def prune_sessions(db: Session, policy: SessionPolicy, now: datetime) -> None:
    """Delete sessions that have ended by age or idleness."""
    over = UserSession.expires_at <= now
    if policy.idle is not None:
        over = or_(over, UserSession.last_seen_at <= now - policy.idle)
    db.execute(delete(UserSession).where(over))


def live_session_counts(db: Session, policy: SessionPolicy, now: datetime) -> dict[int, int]:
    """Return user id → number of sessions still open."""
    query = select(UserSession.user_id, func.count()).where(UserSession.expires_at > now)
    if policy.idle is not None:
        query = query.where(UserSession.last_seen_at > now - policy.idle)
    return {user_id: count for user_id, count in db.execute(query.group_by(UserSession.user_id))}


def live_sessions(db: Session, user_id: int, policy: SessionPolicy, now: datetime):
    """Return a user's open sessions, newest first."""
    query = select(UserSession).where(UserSession.user_id == user_id, UserSession.expires_at > now)
    if policy.idle is not None:
        query = query.where(UserSession.last_seen_at > now - policy.idle)
    return list(db.scalars(query.order_by(UserSession.last_seen_at.desc())))
