"""Create and check users and API tokens; secrets are stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import ROLES, ApiToken, User, utcnow
from app.quoting import quote_input

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD_LENGTH = 12
TOKEN_USE_PRECISION = timedelta(minutes=1)
TOKEN_PREFIX = "qd_"  # noqa: S105 (a prefix, not a secret)
_hasher = PasswordHasher()
# Verifying against this keeps an unknown user as slow as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A user or token request that cannot be honoured, with the reason."""


def role_at_least(role: str, needed: str) -> bool:
    """Tell whether a role carries the rights of another (viewer < operator < admin)."""
    return ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    """Return the role if it is one of viewer, operator, admin."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {quote_input(role)}")
    return role


def check_name(name: str) -> str:
    """Return the name if it is a valid user or token name."""
    if not NAME_PATTERN.match(name):
        raise AccountError(
            "name must be 1-100 characters: letters, digits and . _ @ - (starting with a "
            "letter or digit)"
        )
    return name


def create_user(session: Session, name: str, role: str, password: str) -> User:
    """Add a user with an Argon2-hashed password; flush, don't commit."""
    check_name(name)
    check_role(role)
    check_password_length(password)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise AccountError(f"user {quote_input(name)} already exists")
    user = User(name=name, role=role, password_hash=_hasher.hash(password), created_at=utcnow())
    session.add(user)
    session.flush()
    return user


def ensure_header_user(session: Session, name: str) -> User:
    """Return the user an auth proxy vouched for, creating it as a viewer on first sight.

    Raises AccountError when the name is not one Quarterdeck accepts.
    """
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        check_name(name)
        user = User(name=name, role="viewer", password_hash="", created_at=utcnow())
        session.add(user)
        session.flush()
    return user


class _Counter:
    """A thread-safe running count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


# Every Argon2 verification this process ran: evidence for the rate limiter's tests and bench.
_password_checks = _Counter()


def password_checks() -> int:
    """Return how many password verifications this process has run."""
    return _password_checks.value


def check_password(session: Session, name: str, password: str) -> User | None:
    """Return the enabled user when the password matches, else None (in constant-ish time)."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None or user.disabled or not user.password_hash:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(user.password_hash, password):
        return None
    return user


def note_sign_in(user: User, password: str, now: datetime) -> None:
    """Record a successful sign-in, upgrading the hash if Argon2's parameters changed."""
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_sign_in_at = now


def set_password(user: User, password: str) -> None:
    """Give a user a new password (checked for length), stored as an Argon2 hash."""
    check_password_length(password)
    user.password_hash = _hasher.hash(password)


def check_password_length(password: str) -> str:
    """Return the password if it is long enough."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _verify(password_hash: str, password: str) -> bool:
    _password_checks.add()
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    """Return the stored form of an API token (tokens are random, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str, created_by: int | None = None) -> str:
    """Create an API token and return it; only its hash is stored, so this is the only copy."""
    check_name(name)
    check_role(role)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise AccountError(f"token {quote_input(name)} already exists")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            role=role,
            token_hash=hash_token(token),
            created_at=utcnow(),
            created_by=created_by,
        )
    )
    session.flush()
    return token


def token_identity(session: Session, token: str) -> ApiToken | None:
    """Return the live token row matching a presented bearer token."""
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def note_token_use(session: Session, token_id: int, every: timedelta = TOKEN_USE_PRECISION) -> None:
    """Record that a token was used, at most once per `every` (so reads stay reads)."""
    now = utcnow()
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id)
        .where((ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - every))
        .values(last_used_at=now)
    )


def token_use_is_stale(token: ApiToken, every: timedelta = TOKEN_USE_PRECISION) -> bool:
    """Tell whether the token's last-used time is older than the recording precision."""
    return token.last_used_at is None or utcnow() - token.last_used_at > every
