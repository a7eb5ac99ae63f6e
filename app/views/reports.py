"""The Reports page, each stored report (HTML and CSV), and `GET /api/v1/reports`."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, jsonify, redirect, request, url_for

from app.auth.access import require
from app.queries.reports import report_json, report_status
from app.quoting import quote_input
from app.reports.running import UnknownReport, find_report, make_report
from app.store.reports import deliveries_of, get_report, list_reports
from app.views.common import qd, query_number, render_page_or_part

bp = Blueprint("reports", __name__)
api_bp = Blueprint("reports_api", __name__, url_prefix="/api/v1")

PAGE_SIZE = 50
# The stored HTML is a mail body: inline styles, no script. Framed by the report's own page.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


def _name_filter() -> str:
    name = request.args.get("name", "")
    if len(name) > 100:
        abort(400, "name must be at most 100 characters")
    return name


def _report_or_404(db, report_id: str):
    row = get_report(db, report_id) if len(report_id) <= 32 else None
    if row is None:
        abort(404, f"no report has the id {quote_input(report_id)}")
    return row


@bp.get("/reports")
@require("viewer")
def index():
    """List stored reports newest first, with their delivery status; the configured reports."""
    ctx = qd()
    name = _name_filter()
    offset = query_number(request.args, "offset", default=0, maximum=1_000_000)
    with ctx.store.session() as db:
        rows, total = list_reports(db, name=name or None, limit=PAGE_SIZE, offset=offset)
        deliveries = deliveries_of(db, [r.id for r in rows])
    reports = [
        {"row": r, "deliveries": deliveries[r.id], "status": report_status(deliveries[r.id])}
        for r in rows
    ]
    return render_page_or_part(
        "reports/index.html",
        "reports/_list.html",
        reports=reports,
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        name=name,
        configured=ctx.config.reports,
        smtp=ctx.config.smtp,
        self_url=url_for(
            "reports.index",
            **({"name": name} if name else {}),
            **({"offset": offset} if offset else {}),
        ),  # fmt: skip
    )


@bp.post("/reports/run")
@require("operator")
def run():
    """Make a configured report now; its deliveries go out with the next delivery job."""
    ctx = qd()
    try:
        report = find_report(ctx, request.form.get("name", ""))
    except UnknownReport as exc:
        abort(422, str(exc))
    report_id = make_report(ctx, report, "page")
    flash(f"Report {report.name} made; deliveries are sent within a few seconds.", "success")
    return redirect(url_for("reports.detail", report_id=report_id), code=303)


@bp.get("/reports/<report_id>")
@require("viewer")
def detail(report_id: str):
    """Show one report: its deliveries (every attempt), downloads, and the report itself."""
    ctx = qd()
    with ctx.store.session() as db:
        row = _report_or_404(db, report_id)
        deliveries = deliveries_of(db, [row.id])[row.id]
    return render_page_or_part(
        "reports/detail.html",
        "reports/_deliveries.html",
        report=row,
        summary=row.figures.get("summary", {}),
        deliveries=deliveries,
        status=report_status(deliveries),
        self_url=url_for("reports.detail", report_id=row.id),
    )


@bp.get("/reports/<report_id>/report.html")
@require("viewer")
def html(report_id: str):
    """Serve the report's HTML as it was mailed, under a CSP that allows no script at all."""
    with qd().store.session() as db:
        row = _report_or_404(db, report_id)
    response = Response(row.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = REPORT_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.get("/reports/<report_id>/report.csv")
@require("viewer")
def csv(report_id: str):
    """Download the report's CSV."""
    with qd().store.session() as db:
        row = _report_or_404(db, report_id)
    filename = f"{row.name}-{row.period_end_at:%Y%m%dT%H%MZ}.csv"
    response = Response(row.csv, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@api_bp.get("/reports")
@require("viewer")
def api_list():
    """Return stored reports newest first with their status and deliveries (DESIGN §5)."""
    ctx = qd()
    name = _name_filter()
    limit = query_number(request.args, "limit", default=100, minimum=1, maximum=5000)
    offset = query_number(request.args, "offset", default=0)
    with ctx.store.session() as db:
        rows, total = list_reports(db, name=name or None, limit=limit, offset=offset)
        deliveries = deliveries_of(db, [r.id for r in rows])
        body = [report_json(r, deliveries[r.id]) for r in rows]
    return jsonify({"reports": body, "total": total})


@api_bp.get("/reports/<report_id>")
@require("viewer")
def api_one(report_id: str):
    """Return one report with its deliveries and every figure."""
    with qd().store.session() as db:
        row = _report_or_404(db, report_id)
        body = report_json(row, deliveries_of(db, [row.id])[row.id], full=True)
    body["html_url"] = url_for("reports.html", report_id=row.id)
    body["csv_url"] = url_for("reports.csv", report_id=row.id)
    return jsonify(body)
