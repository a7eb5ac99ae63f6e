"""Every declared job (app/collection/jobs.py) with its last recorded run; who leads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.collection.jobs import Job
from app.queries.sources import iso
from app.store.leadership import current_leader, last_job_runs

# A job whose last run started more than this many intervals ago is overdue.
OVERDUE_RUNS = 3


@dataclass(frozen=True)
class JobView:
    """One declared job as the Sources page, the API and `quarterdeck jobs` show it."""

    id: str
    name: str
    every_s: float
    status: str  # ok | error | stale (never run, or overdue)
    last_run_at: datetime | None
    duration_s: float | None
    last_error: str
    counts: dict[str, int]
    replica: str
    next_run_at: datetime | None

    def to_json(self) -> dict:
        """Render for the API."""
        return {
            "id": self.id,
            "name": self.name,
            "every_s": self.every_s,
            "status": self.status,
            "last_run_at": iso(self.last_run_at),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "last_error": self.last_error or None,
            "counts": self.counts,
            "replica": self.replica or None,
            "next_run_at": iso(self.next_run_at),
        }


@dataclass(frozen=True)
class LeaderView:
    """The replica that runs the jobs, since when, and whether it still renews its row."""

    replica: str
    since_at: datetime
    term: int
    renewed_at: datetime

    def to_json(self) -> dict:
        """Render as DESIGN §5 `leader`."""
        return {
            "replica": self.replica,
            "since": iso(self.since_at),
            "term": self.term,
            "renewed_at": iso(self.renewed_at),
        }


def job_views(db: Session, jobs: list[Job], now: datetime) -> list[JobView]:
    """Describe each declared job from its newest recorded run, in declared order."""
    runs = last_job_runs(db, [job.id for job in jobs])
    views = []
    for job in jobs:
        run = runs.get(job.id)
        if run is None:
            views.append(
                JobView(
                    job.id, job.name, job.every_s, "stale", None, None, "not run yet", {}, "", None
                )  # fmt: skip
            )
            continue
        next_run_at = run.started_at + timedelta(seconds=job.every_s)
        overdue = now - run.started_at > timedelta(seconds=OVERDUE_RUNS * job.every_s)
        status = "error" if not run.ok else "stale" if overdue else "ok"
        views.append(
            JobView(
                job.id,
                job.name,
                job.every_s,
                status,
                run.started_at,
                run.duration_s,
                run.error,
                dict(run.counts or {}),
                run.replica,
                next_run_at,
            )
        )
    return views


def leader_view(db: Session) -> LeaderView | None:
    """Return the recorded leader, or None before any replica has led."""
    row = current_leader(db)
    if row is None:
        return None
    return LeaderView(row.replica, row.since_at, row.term, row.renewed_at)
