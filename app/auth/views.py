"""Sign in and sign out."""

from __future__ import annotations

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

from app.auth.access import public, require, safe_next
from app.auth.accounts import (
    authenticate,
    record_sign_in_failure,
    session_stamp,
    sign_in_blocked_for,
)

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
    address = request.remote_addr or ""
    qd = current_app.extensions["quarterdeck"]
    auth = qd.config.auth
    with qd.store.session(write=True) as db:
        wait_s = sign_in_blocked_for(db, name, address, auth.max_failures, auth.failure_window_s)
        if wait_s:
            minutes = max(1, round(wait_s / 60))
            error = f"Too many failed sign-ins. Try again in about {minutes} min."
            return _refuse(error, next_url, 429)
        user = authenticate(db, name, password) if name and password else None
        if user is None:
            record_sign_in_failure(db, name, address)
            return _refuse("Wrong user name or password.", next_url, 401)
        session.clear()
        session.permanent = True
        session["uid"] = user.id
        session["stamp"] = session_stamp(user)
    current_app.logger.info("sign-in: user=%s address=%s", name, address)
    return redirect(next_url)


def _refuse(error: str, next_url: str, status: int):
    current_app.logger.warning("sign-in refused: address=%s status=%s", request.remote_addr, status)
    return render_template("auth/login.html", error=error, next_url=next_url), status


@bp.post("/logout")
@require("viewer")
def logout():
    """Sign the person out."""
    if g.identity.via != "session":
        abort(400, "only a browser session can sign out here")
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))
