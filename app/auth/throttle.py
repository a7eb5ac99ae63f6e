"""Sign-in rate limiting that holds under concurrent attempts and cannot lock a user out.

Every attempt first claims a failure row (counted as failed until its password proves right),
under a per-name lock, so parallel attempts cannot all slip past the count before any is
recorded. Limits are per (user name, client address), plus a higher one per user name from any
address: a guesser at one address reaches its own limit long before the user's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select, text
from sqlalchemy.orm import Session

from app.models import SignInFailure


@dataclass(frozen=True)
class Limits:
    """How many failures count before sign-in is refused, and for how long they count."""

    per_address: int  # per (user name, client address)
    per_user: int  # per user name, from every address together
    window: timedelta


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming an attempt: a failure row to release, or seconds to wait."""

    failure_id: int | None
    wait_s: int


def claim_attempt(db: Session, name: str, address: str, limits: Limits, now: datetime) -> Claim:
    """Reserve the right to check one password for this name from this address."""
    name, address = name[:100], address[:64]
    _lock_name(db, name)
    since = now - limits.window
    db.execute(delete(SignInFailure).where(SignInFailure.at < since))
    blocked_until: datetime | None = None
    for condition, limit in (
        (
            and_(SignInFailure.username == name, SignInFailure.address == address),
            limits.per_address,
        ),
        (SignInFailure.username == name, limits.per_user),
    ):
        count, last = db.execute(
            select(func.count(), func.max(SignInFailure.at)).where(condition)
        ).one()
        if count >= limit and last is not None:
            until = last + limits.window
            blocked_until = until if blocked_until is None else max(blocked_until, until)
    if blocked_until is not None:
        return Claim(None, max(1, int((blocked_until - now).total_seconds())))
    failure = SignInFailure(username=name, address=address, at=now)
    db.add(failure)
    db.flush()
    return Claim(failure.id, 0)


def release_attempt(db: Session, name: str, address: str) -> None:
    """Forget the failures of a name at an address once its password proved right."""
    db.execute(
        delete(SignInFailure).where(
            SignInFailure.username == name[:100], SignInFailure.address == address[:64]
        )
    )


def _lock_name(db: Session, name: str) -> None:
    # SQLite: the write session's BEGIN IMMEDIATE already serialises every writer.
    if db.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"sign-in:{name}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        # PostgreSQL advisory lock, released at commit: one claim per name at a time.
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
