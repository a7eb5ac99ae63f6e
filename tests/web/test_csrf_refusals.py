"""A refused CSRF token is one info line saying what was refused, never a warning or traceback."""

from __future__ import annotations

import logging


def test_a_csrf_refusal_is_logged_once_at_info_with_method_and_path(signed_in, caplog):
    admin = signed_in("admin")
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        response = admin.post("/admin/users", data={"name": "mallory", "role": "admin"})
    assert response.status_code == 400
    about_csrf = [r for r in caplog.records if "csrf" in r.getMessage().lower()]
    assert len(about_csrf) == 1, [r.getMessage() for r in about_csrf]
    (record,) = about_csrf
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "POST" in record.getMessage() and "/admin/users" in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
