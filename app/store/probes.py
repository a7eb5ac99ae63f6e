"""Write probe results: append the result, update the probe's state, record a transition."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import ProbeResultRow, ProbeState, ProbeTransition
from collectors.probes import ProbeResult


def record_probe_result(
    db: Session, result: ProbeResult, interval: timedelta
) -> ProbeTransition | None:
    """Store one result; return the transition it caused, if any. Flush, don't commit.

    The state stays fresh for three of the probe's intervals; past that it is stale.
    """
    state_now = "passing" if result.ok else "failing"
    db.add(
        ProbeResultRow(
            name=result.name,
            service=result.service,
            at=result.at,
            ok=result.ok,
            status=result.status,
            latency_ms=result.latency_ms,
            detail=result.detail,
        )
    )
    row = db.get(ProbeState, result.name, with_for_update=True)
    transition = None
    if row is None:
        row = ProbeState(name=result.name, state=state_now, since_at=result.at)
        db.add(row)
        if not result.ok:
            # A probe failing from its first run is news too: from "unknown".
            transition = ProbeTransition(
                name=result.name,
                service=result.service,
                at=result.at,
                from_state="unknown",
                to_state=state_now,
                detail=result.detail,
            )
    elif row.state != state_now:
        transition = ProbeTransition(
            name=result.name,
            service=result.service,
            at=result.at,
            from_state=row.state,
            to_state=state_now,
            detail=result.detail,
        )
        row.state = state_now
        row.since_at = result.at
    row.service = result.service
    row.last_at = result.at
    row.last_ok = result.ok
    row.last_status = result.status
    row.last_latency_ms = result.latency_ms
    row.last_detail = result.detail
    row.fresh_until_at = result.at + 3 * interval
    if transition is not None:
        db.add(transition)
    db.flush()
    return transition


def forget_unconfigured_probes(db: Session, names: Collection[str]) -> int:
    """Drop the current state of probes no longer configured (their history stays).

    Reads first and writes only when there is something to drop, so a store that takes no
    writes (read-only file, /readyz says why) does not stop start-up.
    """
    gone = [n for n in db.scalars(select(ProbeState.name)) if n not in set(names)]
    if not gone:
        return 0
    return db.execute(delete(ProbeState).where(ProbeState.name.in_(gone))).rowcount or 0
