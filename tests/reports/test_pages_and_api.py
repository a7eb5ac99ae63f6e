"""The Reports page, a report's page, its HTML and CSV, and GET /api/v1/reports: who may see
and run what, escaping of fleet text, and clear answers to bad input."""

from __future__ import annotations

import re

import pytest

from app.config import ReportConfig
from app.factory import create_app
from app.reports.running import make_report
from tests.conftest import csrf_token_from, sign_in
from tests.reports.conftest import END, XSS_OUTPUT, XSS_SERVICE, seed_known_period


@pytest.fixture
def reports_app(qd):
    """The app with two configured reports and one stored report over the seeded day."""
    seed_known_period(qd.store)
    qd.clock = lambda: END
    qd.config = qd.config.replace(
        reports=(
            ReportConfig(name="handoff", daily_at="07:30"),
            ReportConfig(name="weekly", period_h=168),
        )
    )
    report_id = make_report(qd, qd.config.reports[0], "schedule")
    return create_app(qd=qd), report_id


def client_as(app, make_user, role: str):
    client = app.test_client()
    assert sign_in(client, make_user(f"user-{role}", role)).status_code == 302
    return client


def test_the_nav_has_reports_and_a_viewer_sees_the_list(reports_app, make_user):
    app, report_id = reports_app
    client = client_as(app, make_user, "viewer")
    page = client.get("/reports")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<a href="/reports" aria-current="page">Reports</a>' in html
    assert f'data-report="{report_id}"' in html
    assert 'data-report-status="stored"' in html
    assert "daily at 07:30 UTC" in html and "on demand" in html and "168 h" in html
    assert "Run now" not in html  # viewers read, operators run


def test_a_report_page_frames_the_stored_html_and_links_the_csv(reports_app, make_user):
    app, report_id = reports_app
    client = client_as(app, make_user, "viewer")
    html = client.get(f"/reports/{report_id}").get_data(as_text=True)
    assert f'src="/reports/{report_id}/report.html"' in html and 'sandbox=""' in html
    assert f'href="/reports/{report_id}/report.csv"' in html
    framed = client.get(f"/reports/{report_id}/report.html")
    assert framed.status_code == 200 and framed.mimetype == "text/html"
    policy = framed.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert framed.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "97.917%" in framed.get_data(as_text=True)
    download = client.get(f"/reports/{report_id}/report.csv")
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == (
        'attachment; filename="handoff-20261201T0000Z.csv"'
    )
    assert download.get_data(as_text=True).startswith("section,field,value\r\n")


def test_fleet_text_is_escaped_in_the_report_and_its_page(reports_app, make_user):
    app, report_id = reports_app
    client = client_as(app, make_user, "viewer")
    for url in (f"/reports/{report_id}", f"/reports/{report_id}/report.html", "/reports"):
        body = client.get(url).get_data(as_text=True)
        assert XSS_SERVICE not in body and XSS_OUTPUT not in body, url
    framed = client.get(f"/reports/{report_id}/report.html").get_data(as_text=True)
    assert "&lt;script&gt;" in framed and "&lt;img src=x" in framed


def test_the_api_lists_reports_and_returns_one_with_its_figures(reports_app, make_token):
    app, report_id = reports_app
    auth = {"Authorization": f"Bearer {make_token('reader', 'viewer')}"}
    client = app.test_client()
    listing = client.get("/api/v1/reports", headers=auth).get_json()
    assert listing["total"] == 1
    (entry,) = listing["reports"]
    assert entry["id"] == report_id and entry["name"] == "handoff"
    assert entry["created_at"] == "2026-12-01T00:00:00Z"
    assert entry["status"] == "stored" and entry["delivery"] == []
    assert entry["trigger"] == "schedule" and "figures" not in entry
    one = client.get(f"/api/v1/reports/{report_id}", headers=auth).get_json()
    assert one["figures"]["summary"]["incidents"] == 6
    assert one["csv_url"] == f"/reports/{report_id}/report.csv"
    assert client.get("/api/v1/reports?name=weekly", headers=auth).get_json()["total"] == 0


def test_bad_input_and_unknown_reports_get_clear_errors(reports_app, make_token):
    app, _ = reports_app
    auth = {"Authorization": f"Bearer {make_token('reader', 'viewer')}"}
    client = app.test_client()
    bad = client.get("/api/v1/reports?limit=ten", headers=auth)
    assert bad.status_code == 400 and "limit" in bad.get_json()["error"]["message"]
    assert client.get("/api/v1/reports?limit=0", headers=auth).status_code == 400
    missing = client.get("/api/v1/reports/nope", headers=auth)
    assert missing.status_code == 404 and "nope" in missing.get_json()["error"]["message"]
    assert client.get("/api/v1/reports/" + "a" * 200, headers=auth).status_code == 404
    assert client.get("/api/v1/reports").status_code == 401
    assert client.get("/reports").status_code == 302  # to the sign-in form


def test_an_operator_runs_a_report_now_and_a_viewer_may_not(reports_app, make_user, qd):
    app, _ = reports_app
    viewer = client_as(app, make_user, "viewer")
    token = csrf_token_from(viewer.get("/reports").get_data(as_text=True))
    refused = viewer.post("/reports/run", data={"name": "weekly", "csrf_token": token})
    assert refused.status_code == 403
    operator = client_as(app, make_user, "operator")
    page = operator.get("/reports").get_data(as_text=True)
    assert "Run now" in page
    no_csrf = operator.post("/reports/run", data={"name": "weekly"})
    assert no_csrf.status_code == 400
    token = csrf_token_from(page)
    unknown = operator.post("/reports/run", data={"name": "nope", "csrf_token": token})
    assert unknown.status_code == 422
    made = operator.post("/reports/run", data={"name": "weekly", "csrf_token": token})
    assert made.status_code == 303
    report_id = re.fullmatch(r"/reports/([0-9a-f]{32})", made.headers["Location"]).group(1)
    detail = operator.get(f"/reports/{report_id}").get_data(as_text=True)
    assert "Report weekly made" in detail
    assert "2026-11-24 00:00" in detail  # a 168-hour period
    assert operator.get("/api/v1/reports?name=weekly").get_json()["reports"][0]["trigger"] == "page"
