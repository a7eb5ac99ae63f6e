"""Write what Prometheus and Alertmanager hold now, replacing the source's previous snapshot.

Each update is complete: a row of this source that the update does not name is gone (the
service stopped serving, the alert resolved). One read of the source's rows, a diff in Python,
then one executemany per kind of change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from app.collection.written import Written
from app.models import FiringAlertRow, PushGauge, ScrapeTarget, ServiceRedFigure
from app.queries.services import service_topic
from app.store.bulk import insert_rows, update_rows
from collectors.metrics import (
    AlertSilence,
    AlertsUpdate,
    FiringAlert,
    PushGaugeUpdate,
    RedUpdate,
    TargetsUpdate,
)

_CHUNK = 500


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _replace(
    db: Session,
    table: Table,
    source: str,
    keys: Sequence[str],
    rows: Sequence[dict],
    observed_at: datetime,
) -> tuple[set[tuple], set[tuple]]:
    """Make the source's rows in `table` exactly `rows`; return (changed keys, removed keys).

    `rows` hold every column but `id`, `source` and `observed_at`. A row whose values did not
    change is still re-stamped with `observed_at`, so its age is the source's last answer.
    """
    value_columns = [c for c in (rows[0] if rows else {}) if c not in keys]
    current = {
        tuple(r[k] for k in keys): r
        for r in db.execute(select(table).where(table.c.source == source)).mappings()
    }
    wanted = {tuple(r[k] for k in keys): r for r in rows}
    inserts, updates, changed = [], [], set()
    for key, row in wanted.items():
        held = current.get(key)
        if held is None:
            inserts.append({**row, "source": source, "observed_at": observed_at})
            changed.add(key)
            continue
        if any(held[c] != row[c] for c in value_columns):
            changed.add(key)
        updates.append(
            {"_id": held["id"], **{c: row[c] for c in value_columns}, "observed_at": observed_at}
        )
    removed = [key for key in current if key not in wanted]
    connection = db.connection()
    insert_rows(connection, table, inserts)
    update_rows(connection, table, updates)
    gone_ids = [current[key]["id"] for key in removed]
    for start in range(0, len(gone_ids), _CHUNK):
        db.execute(delete(table).where(table.c.id.in_(gone_ids[start : start + _CHUNK])))
    return changed, set(removed)


def _finite(value: float | None) -> float | None:
    # The collector already drops NaN and ±Inf; a store never holds them (PostgreSQL would).
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def write_red(db: Session, source: str, update: RedUpdate) -> Written:
    """Store every service's current RED figures; wake the pages of the services that changed."""
    rows = [
        {
            "service": s.service,
            "rate_rps": _finite(s.rate_rps),
            "error_ratio": _finite(s.error_ratio),
            "p50_ms": _finite(s.p50_ms),
            "p95_ms": _finite(s.p95_ms),
        }
        for s in update.services
    ]
    changed, removed = _replace(
        db, ServiceRedFigure.__table__, source, ("service",), rows, update.observed_at
    )
    services = {key[0] for key in changed | removed}
    topics = {service_topic(name) for name in services}
    if services:
        topics.add("metrics")
    return Written({"red_services": len(rows)}, frozenset(topics))


def write_push_gauge(db: Session, source: str, update: PushGaugeUpdate) -> Written:
    """Store the push-connection gauge of every instance; wake the Push page if it moved."""
    rows = [
        {"service": v.service, "instance": v.instance, "connections": float(v.connections)}
        for v in update.instances
        if _finite(v.connections) is not None
    ]
    changed, removed = _replace(
        db, PushGauge.__table__, source, ("service", "instance"), rows, update.observed_at
    )
    services = {key[0] for key in changed | removed}
    topics = {service_topic(name) for name in services}
    if services:
        topics.add("push")
    return Written({"push_instances": len(rows)}, frozenset(topics))


def write_targets(db: Session, source: str, update: TargetsUpdate) -> Written:
    """Store the health of every scrape target."""
    rows = [
        {
            "job": t.job,
            "instance": t.instance,
            "service": t.service,
            "health": t.health,
            "last_error": t.last_error,
            "scrape_url": t.scrape_url,
            "last_scrape_at": t.last_scrape_at,
        }
        for t in update.targets
    ]
    changed, removed = _replace(
        db, ScrapeTarget.__table__, source, ("job", "instance"), rows, update.observed_at
    )
    topics = {"metrics", "sources"} if changed or removed else set()
    down = sum(1 for t in update.targets if t.health == "down")
    return Written({"targets": len(rows), "targets_down": down}, frozenset(topics))


def _silence_json(silence: AlertSilence) -> dict:
    return {
        "id": silence.id,
        "created_by": silence.created_by,
        "comment": silence.comment,
        "starts_at": _iso(silence.starts_at),
        "ends_at": _iso(silence.ends_at),
        "matchers": [dict(m) for m in silence.matchers],
    }


def _alert_row(alert: FiringAlert) -> dict:
    return {
        "alert_key": alert.key,
        "name": alert.name,
        "service": alert.service,
        "state": alert.state,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "active_at": alert.active_at,
        "silenced": alert.silenced,
        "silences": [_silence_json(s) for s in alert.silences],
        "inhibited": alert.inhibited,
        "inhibited_by": list(alert.inhibited_by),
    }


def write_alerts(db: Session, source: str, update: AlertsUpdate) -> Written:
    """Store the alerts a source holds now; wake the pages of the services they concern."""
    rows = list({row["alert_key"]: row for row in map(_alert_row, update.alerts)}.values())
    table = FiringAlertRow.__table__
    before = {
        r.alert_key: r.service
        for r in db.execute(
            select(table.c.alert_key, table.c.service).where(table.c.source == source)
        )
    }
    changed, removed = _replace(db, table, source, ("alert_key",), rows, update.observed_at)
    by_key = {row["alert_key"]: row["service"] for row in rows}
    services = {by_key[k] for (k,) in changed} | {before[k] for (k,) in removed}
    topics = {service_topic(name) for name in services if name}
    if changed or removed:
        topics.add("alerts")
    firing = sum(1 for row in rows if row["state"] in ("firing", "active", "suppressed"))
    return Written({"alerts": len(rows), "alerts_firing": firing}, frozenset(topics))
