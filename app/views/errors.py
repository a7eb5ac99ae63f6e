"""Answer errors as JSON on the API and as a page elsewhere."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.auth.access import is_api_request

log = logging.getLogger(__name__)


def json_error(status: int, code: str, message: str):
    """Build the API's error response: {"error": {"code", "message"}}."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    """Install the error handlers."""
    # Flask-WTF logs a bare "The CSRF token is missing." per refusal; ours says where and who.
    logging.getLogger("flask_wtf.csrf").setLevel(logging.WARNING)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def _http_error(exc: HTTPException):
    status = exc.code or 500
    if is_api_request():
        response = json_error(status, _code(exc), exc.description or exc.name)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="quarterdeck"'
    else:
        page = render_template(
            "errors/error.html", status=status, title=exc.name, message=exc.description
        )
        response = current_app.make_response((page, status))
    _keep_protocol_headers(exc, response)
    return response


def _keep_protocol_headers(exc: HTTPException, response) -> None:
    """Copy the headers the status needs (405 `Allow`, `Retry-After`, ...) onto our answer."""
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value


def _csrf_error(exc: CSRFError):
    # One line at info: a stale form is routine, not an incident.
    log.info(
        "CSRF refused: %s %r from %s: %s",
        request.method,
        request.path[:200],
        request.remote_addr,
        exc.description,
    )
    if is_api_request():
        return json_error(400, "csrf_failed", exc.description)
    page = render_template(
        "errors/error.html",
        status=400,
        title="Form expired or forged",
        message="The form's security token was missing or wrong. Reload the page and try again.",
    )
    return page, 400


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return _http_error(InternalServerError("Something went wrong; the error was logged."))
