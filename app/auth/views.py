"""Sign in and sign out."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from app.auth.access import SESSION_KEY, client_address, public, require, safe_next, session_policy
from app.auth.accounts import check_password, note_sign_in
from app.auth.administration import note_sign_out
from app.auth.sessions import end_session, prune_sessions, start_session
from app.auth.throttle import Limits, claim_attempt, release_attempt
from app.models import User

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Show the sign-in form and sign a person in."""
    next_url = safe_next(request.values.get("next") or url_for("overview.index"))
    if request.method == "GET":
        if g.identity is not None:
            return redirect(next_url)
        return render_template("auth/login.html", error=None, next_url=next_url)
    name = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    if not name or not password:
        return _refuse("Enter your user name and password.", next_url, 400)
    address = client_address()
    qd = current_app.extensions["quarterdeck"]
    auth = qd.config.auth
    limits = Limits(
        auth.max_failures, auth.user_max_failures, timedelta(seconds=auth.failure_window_s)
    )
    # The attempt is claimed (and counted as failed) before the password is checked, so
    # parallel guesses cannot all pass the count; the slow check runs outside any lock.
    with qd.store.session(write=True) as db:
        claim = claim_attempt(db, name, address, limits, qd.clock())
    if claim.wait_s:
        minutes = max(1, round(claim.wait_s / 60))
        error = f"Too many failed sign-ins. Try again in about {minutes} min."
        return _refuse(error, next_url, 429)
    with qd.store.session() as db:
        user = check_password(db, name, password)
    if user is None:
        return _refuse("Wrong user name or password.", next_url, 401)
    policy = session_policy(qd.config)
    previous = session.get(SESSION_KEY)
    with qd.store.session(write=True) as db:
        user = db.get(User, user.id)
        if user is None or user.disabled:  # changed while the password was being checked
            return _refuse("Wrong user name or password.", next_url, 401)
        now = qd.clock()
        if isinstance(previous, str) and previous:
            end_session(db, previous)  # signing in again replaces this browser's session
        release_attempt(db, name, address)
        note_sign_in(user, password, now)
        prune_sessions(db, policy, now)
        secret = start_session(
            db, user, policy, now, address=address, user_agent=request.user_agent.string
        )
    # A fresh cookie: nothing of the anonymous session (nor a fixed session id) carries over.
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = secret
    current_app.logger.info("sign-in: user=%s address=%s", name, address)
    return redirect(next_url)


def _refuse(error: str, next_url: str, status: int):
    current_app.logger.warning("sign-in refused: address=%s status=%s", client_address(), status)
    return render_template("auth/login.html", error=error, next_url=next_url), status


@bp.post("/logout")
@require("viewer")
def logout():
    """Sign the person out: the session record goes, so a copy of the cookie is worthless."""
    if g.identity.via != "session":
        abort(400, "only a browser session can sign out here")
    qd = current_app.extensions["quarterdeck"]
    secret = session.get(SESSION_KEY)
    with qd.store.session(write=True) as db:
        end_session(db, secret)
    session.clear()
    note_sign_out(qd, g.identity.name, client_address())
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))
