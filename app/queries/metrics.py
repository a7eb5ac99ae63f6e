"""RED per service, the push gauge per instance, scrape targets and alerts, as pages show them.

The rows are current values; whether they are fresh is the source's status (`/api/v1/sources`):
a Prometheus that stopped answering leaves its last figures here, marked stale by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import FiringAlertRow, PushGauge, ScrapeTarget, ServiceRedFigure
from app.queries.sources import SourceView, iso
from app.queries.span_red import covered_until, service_span_red, services_span_red

red_t = ServiceRedFigure.__table__
push_t = PushGauge.__table__
targets_t = ScrapeTarget.__table__
alerts_t = FiringAlertRow.__table__

# Alerts muted in Alertmanager are listed after the ones that still need someone.
_STATE_ORDER = {"firing": 0, "active": 0, "pending": 1, "suppressed": 2}


@dataclass(frozen=True)
class RedFigures:
    """A service's current rate, error ratio and latency, from one source."""

    service: str
    source: str
    rate_rps: float | None
    error_ratio: float | None
    p50_ms: float | None
    p95_ms: float | None
    observed_at: datetime

    def to_json(self, source: SourceView | None = None) -> dict:
        """Render as the `red` object of a service (stale when its source is)."""
        return {
            "source": self.source,
            "rate_rps": self.rate_rps,
            "error_ratio": self.error_ratio,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "observed_at": iso(self.observed_at),
            "stale": source.stale if source is not None else False,
        }


def _red(row) -> RedFigures:
    return RedFigures(
        row.service,
        row.source,
        row.rate_rps,
        row.error_ratio,
        row.p50_ms,
        row.p95_ms,
        row.observed_at,
    )


def red_by_service(db: Session, services: Iterable[str] | None = None) -> dict[str, RedFigures]:
    """Return the RED figures of every service (or of the ones named), by service name."""
    query = select(red_t).order_by(red_t.c.service, red_t.c.source)
    if services is not None:
        wanted = sorted(set(services))
        if not wanted:
            return {}
        query = query.where(red_t.c.service.in_(wanted))
    figures: dict[str, RedFigures] = {}
    for row in db.execute(query):
        figures.setdefault(row.service, _red(row))
    return figures


def service_red(db: Session, service: str) -> RedFigures | None:
    """Return one service's RED figures, or None when Prometheus has none for it."""
    return red_by_service(db, [service]).get(service)


# The window of the span figures shown where Prometheus has none (its own default window).
TRACES_RED_WINDOW = timedelta(minutes=5)


def traces_red(db: Session, service: str, now: datetime) -> RedFigures | None:
    """Return a service's RED figures from its spans (source "traces"), or None without spans."""
    figures = service_span_red(db, service, now - TRACES_RED_WINDOW, now)
    if figures is None:
        return None
    return RedFigures(
        service,
        "traces",
        figures.rate_rps,
        figures.error_ratio,
        figures.p50_ms,
        figures.p95_ms,
        covered_until(db) or now,
    )


def service_red_or_traces(db: Session, service: str, now: datetime) -> RedFigures | None:
    """Return Prometheus's figures for a service, or the spans' where Prometheus has none."""
    found = service_red(db, service)
    if found is not None and found.rate_rps is not None:
        return found
    return traces_red(db, service, now) or found


def red_or_traces_by_service(db: Session, now: datetime) -> dict[str, RedFigures]:
    """Return every service's figures as `service_red_or_traces` gives it, in a few queries."""
    figures = red_by_service(db)
    spans = services_span_red(db, now - TRACES_RED_WINDOW, now)
    if not spans:
        return figures
    observed_at = covered_until(db) or now
    for service, red in spans.items():
        found = figures.get(service)
        if found is None or found.rate_rps is None:
            figures[service] = RedFigures(
                service,
                "traces",
                red.rate_rps,
                red.error_ratio,
                red.p50_ms,
                red.p95_ms,
                observed_at,
            )
    return figures


@dataclass(frozen=True)
class PushGaugeReading:
    """The push-connection gauge of one instance."""

    service: str
    instance: str
    connections: float
    source: str
    observed_at: datetime

    def to_json(self) -> dict:
        """Render as an instance entry of the push connections (`source` is "prometheus")."""
        return {
            "instance": self.instance,
            "connections": self.connections,
            "source": self.source,
            "observed_at": iso(self.observed_at),
        }


def push_gauge_by_instance(db: Session, service: str | None = None) -> list[PushGaugeReading]:
    """Return the push gauge of every instance (of one service), by service then instance."""
    query = select(push_t).order_by(push_t.c.service, push_t.c.instance, push_t.c.source)
    if service is not None:
        query = query.where(push_t.c.service == service)
    return [
        PushGaugeReading(r.service, r.instance, r.connections, r.source, r.observed_at)
        for r in db.execute(query)
    ]


def push_gauge_by_service(db: Session) -> dict[str, list[PushGaugeReading]]:
    """Return the push gauge readings grouped by service."""
    grouped: dict[str, list[PushGaugeReading]] = {}
    for reading in push_gauge_by_instance(db):
        grouped.setdefault(reading.service, []).append(reading)
    return grouped


@dataclass(frozen=True)
class TargetView:
    """A scrape target and its last scrape."""

    job: str
    instance: str
    service: str
    health: str
    last_error: str
    scrape_url: str
    last_scrape_at: datetime | None
    source: str

    def to_json(self) -> dict:
        """Render as a `targets[]` entry."""
        return {
            "job": self.job,
            "instance": self.instance,
            "service": self.service or None,
            "health": self.health,
            "last_error": self.last_error or None,
            "scrape_url": self.scrape_url,
            "last_scrape_at": iso(self.last_scrape_at),
            "source": self.source,
        }


def scrape_targets(db: Session, service: str | None = None) -> list[TargetView]:
    """Return the scrape targets (of one service), down ones first."""
    query = select(targets_t)
    if service is not None:
        query = query.where(targets_t.c.service == service)
    views = [
        TargetView(
            r.job,
            r.instance,
            r.service,
            r.health,
            r.last_error,
            r.scrape_url,
            r.last_scrape_at,
            r.source,
        )
        for r in db.execute(query)
    ]
    return sorted(views, key=lambda t: (t.health == "up", t.job, t.instance))


@dataclass
class AlertView:
    """One alert as every source that reports it sees it (Prometheus, Alertmanager)."""

    key: str
    name: str
    service: str
    state: str
    labels: dict
    annotations: dict
    active_at: datetime | None
    silenced: bool = False
    silences: list[dict] = field(default_factory=list)
    inhibited: bool = False
    inhibited_by: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """Render as an `alerts[]` entry of a service."""
        return {
            "name": self.name,
            "service": self.service or None,
            "state": self.state,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "active_at": iso(self.active_at),
            "silenced": self.silenced,
            "silences": [dict(s) for s in self.silences],
            "inhibited": self.inhibited,
            "inhibited_by": list(self.inhibited_by),
            "sources": list(self.sources),
        }


def _merged_alerts(rows) -> list[AlertView]:
    """Merge the rows of one alert from several sources: silences come from Alertmanager."""
    merged: dict[str, AlertView] = {}
    for row in rows:
        view = merged.get(row.alert_key)
        if view is None:
            view = merged[row.alert_key] = AlertView(
                row.alert_key,
                row.name,
                row.service,
                row.state,
                dict(row.labels or {}),
                dict(row.annotations or {}),
                row.active_at,
            )
        view.sources.append(row.source)
        if row.active_at is not None and (view.active_at is None or row.active_at < view.active_at):
            view.active_at = row.active_at
        view.annotations = {**(row.annotations or {}), **view.annotations}
        if row.silenced or row.inhibited or row.state == "suppressed":
            view.state = "suppressed"
        if row.silenced:
            view.silenced = True
            view.silences.extend(row.silences or [])
        if row.inhibited:
            view.inhibited = True
            view.inhibited_by.extend(row.inhibited_by or [])
    return sorted(
        merged.values(),
        key=lambda a: (
            _STATE_ORDER.get(a.state, 1),
            a.active_at is None,
            iso(a.active_at) or "",
            a.name,
            a.key,
        ),
    )


def service_alerts(db: Session, service: str) -> list[AlertView]:
    """Return the alerts of one service: unsilenced first, oldest first."""
    rows = db.execute(
        select(alerts_t).where(alerts_t.c.service == service).order_by(alerts_t.c.source)
    )
    return _merged_alerts(rows)


def alerts_by_service(db: Session) -> dict[str, list[AlertView]]:
    """Return every alert grouped by service ("" for alerts no service label names)."""
    grouped: dict[str, list[AlertView]] = {}
    for alert in _merged_alerts(db.execute(select(alerts_t).order_by(alerts_t.c.source))):
        grouped.setdefault(alert.service, []).append(alert)
    return grouped
