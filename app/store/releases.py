"""Record releases: the versions the catalog's instances run, and the services' releases keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Instance, Release, Service
from collectors.consul_releases import ReleaseKey

LAST_SEEN_STEP = timedelta(minutes=1)


def _seen_in(row: Release, where: str) -> None:
    parts = set(filter(None, row.seen_in.split(",")))
    parts.add(where)
    row.seen_in = ",".join(sorted(parts))


def record_catalog_releases(db: Session, now: datetime) -> int:
    """Add a release for each (service, version) an instance runs; return how many are new.

    A service's first release starts when its first instance was first seen (or now, for
    instances recorded before that column existed); a later one starts now, when an instance is
    first seen running it: an in-place upgrade keeps the instance's ID, so its first sighting
    belongs to the version it ran then. Flush, don't commit.
    """
    running = db.execute(
        select(
            Service.name,
            Instance.version,
            func.count(),
            func.min(Instance.first_seen_at),
        )
        .join(Service, Instance.service_id == Service.id)
        .where(Instance.gone_at.is_(None), Instance.version.is_not(None), Instance.version != "")
        .group_by(Service.name, Instance.version)
    ).all()
    known = {(r.service, r.version): r for r in db.scalars(select(Release))}
    had_releases = {service for service, _ in known}
    added = 0
    live: set[tuple[str, str]] = set()
    for service, version, count, first_seen_at in running:
        version = version[:100]
        live.add((service, version))
        row = known.get((service, version))
        if row is None:
            started = (first_seen_at or now) if service not in had_releases else now
            row = Release(
                service=service, version=version, started_at=started, last_seen_at=now,
                seen_in="catalog", by="", kv_role="", instances=count,
            )  # fmt: skip
            db.add(row)
            known[(service, version)] = row
            added += 1
            continue
        # Every pass sees every running release: write the time only once a minute.
        if row.instances != count or now - row.last_seen_at >= LAST_SEEN_STEP:
            row.last_seen_at = now
        row.instances = count
        _seen_in(row, "catalog")
    for key, row in known.items():
        if key not in live and row.instances:
            row.instances = 0
    db.flush()
    return added


def record_release_keys(db: Session, keys: Sequence[ReleaseKey], now: datetime) -> int:
    """Add the versions the releases keys name, with the history's times; return how many are new.

    The key's `active` and `previous` are marked on their releases (and cleared elsewhere for
    the service). Flush, don't commit.
    """
    services = [k.service for k in keys]
    known = {
        (r.service, r.version): r
        for r in db.scalars(select(Release).where(Release.service.in_(services)))
    } if services else {}  # fmt: skip
    added = 0
    for key in keys:
        named: dict[str, tuple[datetime | None, str]] = {}
        for entry in key.history:
            named[entry.version] = (entry.at, entry.by)
        for version in (key.previous, key.active):
            if version and version not in named:
                named[version] = (None, "")
        for version, (at, by) in named.items():
            row = known.get((key.service, version))
            if row is None:
                row = Release(
                    service=key.service, version=version, started_at=at or now,
                    last_seen_at=now, seen_in="kv", by=by, kv_role="", instances=0,
                )  # fmt: skip
                db.add(row)
                known[(key.service, version)] = row
                added += 1
            else:
                if at is not None and at < row.started_at:
                    row.started_at = at
                if by and not row.by:
                    row.by = by
                _seen_in(row, "kv")
        for (service, version), row in known.items():
            if service != key.service:
                continue
            role = "active" if version == key.active else ""
            role = role or ("previous" if version == key.previous else "")
            row.kv_role = role
    db.flush()
    return added
