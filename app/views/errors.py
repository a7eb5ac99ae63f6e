"""Answer errors as JSON on the API and as a page elsewhere."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.auth.access import is_api_request


def json_error(status: int, code: str, message: str):
    """Build the API's error response: {"error": {"code", "message"}}."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    """Install the error handlers."""
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
        return response
    page = render_template(
        "errors/error.html", status=status, title=exc.name, message=exc.description
    )
    return page, status


def _csrf_error(exc: CSRFError):
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
