"""What the Prometheus and Alertmanager collectors return: current figures, never history.

Every update is a whole snapshot of what its source holds now, so the store replaces what it
held for that source. A figure the source could not compute (no traffic: a ratio of 0/0, a
quantile of an empty histogram) stays None, never 0.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class ServiceRed:
    """One service's current rate, errors and duration, as Prometheus computes them."""

    service: str
    rate_rps: float | None = None
    error_ratio: float | None = None  # 0-1
    p50_ms: float | None = None
    p95_ms: float | None = None


@dataclass(frozen=True)
class RedUpdate:
    """Every service's RED figures at one moment (one query per figure, all services)."""

    observed_at: datetime
    services: tuple[ServiceRed, ...] = ()


@dataclass(frozen=True)
class PushGaugeValue:
    """The push-connection gauge of one instance of a service."""

    service: str
    instance: str
    connections: float


@dataclass(frozen=True)
class PushGaugeUpdate:
    """The push-connection gauge (`[prometheus] push_gauge`) of every instance at one moment."""

    observed_at: datetime
    gauge: str
    instances: tuple[PushGaugeValue, ...] = ()


@dataclass(frozen=True)
class ScrapeTargetState:
    """One scrape target of Prometheus and whether its last scrape worked."""

    job: str
    instance: str
    service: str = ""  # the target's service label, when it has one
    health: str = "unknown"  # up | down | unknown
    last_error: str = ""
    scrape_url: str = ""
    last_scrape_at: datetime | None = None


@dataclass(frozen=True)
class TargetsUpdate:
    """Every active scrape target at one moment."""

    observed_at: datetime
    targets: tuple[ScrapeTargetState, ...] = ()


@dataclass(frozen=True)
class AlertSilence:
    """An Alertmanager silence: who muted what, why, and until when."""

    id: str
    created_by: str = ""
    comment: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    matchers: tuple[dict, ...] = ()  # as Alertmanager gives them: name, value, isRegex, isEqual


@dataclass(frozen=True)
class FiringAlert:
    """An alert that fires now, attached to a service by a label."""

    name: str  # the alertname label
    labels: dict[str, str]
    service: str = ""  # "" when the alert has no service label
    annotations: dict[str, str] = field(default_factory=dict)
    state: str = "firing"  # firing | pending (Prometheus) · active | suppressed (Alertmanager)
    active_at: datetime | None = None
    silenced: bool = False
    silences: tuple[AlertSilence, ...] = ()
    inhibited: bool = False
    inhibited_by: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Identify the alert by its label set, the same whichever source reports it."""
        return alert_key(self.labels)


def alert_key(labels: dict[str, str]) -> str:
    """Return a stable key for a label set (Prometheus and Alertmanager agree on labels)."""
    text = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class AlertsUpdate:
    """Every alert one source holds at one moment (Prometheus rules or Alertmanager)."""

    observed_at: datetime
    alerts: tuple[FiringAlert, ...] = ()


def parse_time(text: object) -> datetime | None:
    """Parse Prometheus's RFC 3339 times (nanoseconds allowed); the zero time means never."""
    if not isinstance(text, str) or not text:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}")
    whole, fraction, zone = match.groups()
    if whole.startswith("0001-"):
        return None
    fraction = (fraction or "")[:7]  # microseconds: "." and six digits
    parsed = datetime.fromisoformat(f"{whole}{fraction}{'+00:00' if zone == 'Z' else zone}")
    return parsed.astimezone(UTC)
