"""Write who leads and what each job run did; read them back for the fence and the pages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import JobRun, LeaderRow

LOCK_NAME = "collection"
# Runs kept per job: enough for the Sources page and a post-mortem, bounded whatever the interval.
RUNS_KEPT_PER_JOB = 200


def claim_leadership(db: Session, replica: str, now: datetime) -> int:
    """Record `replica` as the new leader and return its term (one more than the last).

    Only the holder of the leader lock calls this, so no two replicas write it at once.
    """
    row = db.get(LeaderRow, LOCK_NAME)
    if row is None:
        row = LeaderRow(name=LOCK_NAME, replica=replica, since_at=now, term=1, renewed_at=now)
        db.add(row)
    else:
        row.replica, row.since_at, row.renewed_at = replica, now, now
        row.term += 1
    db.flush()
    return row.term


def renew_leadership(db: Session, replica: str, term: int, now: datetime) -> bool:
    """Note that the leader of `term` still holds the lock; False when another term began."""
    row = db.get(LeaderRow, LOCK_NAME)
    if row is None or row.term != term or row.replica != replica:
        return False
    row.renewed_at = now
    return True


def current_leader(db: Session) -> LeaderRow | None:
    """Return the recorded leader, or None when no replica has led yet."""
    return db.get(LeaderRow, LOCK_NAME)


def term_holds(db: Session, replica: str, term: int) -> bool:
    """Tell whether `replica`'s `term` is still the recorded one (no one took over since)."""
    row = db.execute(
        select(LeaderRow.replica, LeaderRow.term).where(LeaderRow.name == LOCK_NAME)
    ).first()
    return row is not None and (row.replica, row.term) == (replica, term)


def record_job_run(db: Session, run: JobRun, keep: int = RUNS_KEPT_PER_JOB) -> None:
    """Store one job run and drop that job's runs past the newest `keep`."""
    db.add(run)
    db.flush()
    oldest_kept = db.scalar(
        select(JobRun.id)
        .where(JobRun.job_id == run.job_id)
        .order_by(JobRun.id.desc())
        .offset(keep - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        db.execute(delete(JobRun).where(JobRun.job_id == run.job_id, JobRun.id < oldest_kept))


def last_job_runs(db: Session, job_ids: list[str]) -> dict[str, JobRun]:
    """Return each job's newest run (jobs that never ran are absent)."""
    runs: dict[str, JobRun] = {}
    for job_id in job_ids:  # one indexed read per job, newest first
        newest = select(JobRun).where(JobRun.job_id == job_id)
        run = db.scalars(newest.order_by(JobRun.started_at.desc()).limit(1)).first()
        if run is not None:
            runs[job_id] = run
    return runs
