"""The Sources page: each configured source, its status, last success and last error; which
replica leads; every declared job with its last run; and what is missing (a tool the demo
could not run), with how to add it."""

from __future__ import annotations

from flask import Blueprint

from app.auth.access import require
from app.collection.jobs import declared_jobs
from app.queries.jobs import job_views, leader_view
from app.queries.sources import source_hints
from app.views.common import current_sources, qd, render_page_or_part

bp = Blueprint("sources", __name__)


@bp.get("/sources")
@require("viewer")
def index():
    """Show every configured source, the leader and the scheduled jobs."""
    ctx = qd()
    with ctx.store.session() as db:
        sources = current_sources(db)
        leader = leader_view(db)
        jobs = job_views(db, declared_jobs(ctx), ctx.clock())
    return render_page_or_part(
        "sources/index.html",
        "sources/_table.html",
        sources=sources,
        hints=source_hints(ctx.config),
        jobs=jobs,
        leader=leader,
        leader_silent_s=(ctx.clock() - leader.renewed_at).total_seconds() if leader else 0,
        this_replica=ctx.replica,
    )
