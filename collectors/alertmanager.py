"""Read Alertmanager's API v2: which alerts fire, which are silenced, by whom and until when.

Two requests a pass: `/api/v2/alerts` (each alert's `status.state` active | suppressed |
unprocessed, with `silencedBy` silence ids and `inhibitedBy` alert fingerprints) and
`/api/v2/silences` (createdBy, comment, startsAt, endsAt, matchers) to name the silences.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import requests

from collectors.base import SourceUnavailable
from collectors.metrics import AlertSilence, AlertsUpdate, FiringAlert, parse_time


class AlertmanagerCollector:
    """Collect Alertmanager's alerts with the silences and inhibitions that mute them."""

    kind = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        name: str = "alertmanager",
        timeout_s: float = 5.0,
        alert_service_label: str = "service",
        clock: Callable[[], datetime],
        session: requests.Session | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.alert_service_label = alert_service_label
        self.clock = clock
        self.session = session or requests.Session()

    @classmethod
    def from_config(cls, config, alert_service_label: str, clock) -> AlertmanagerCollector:
        """Build from an [alertmanager] section (app.config.AlertmanagerConfig)."""
        return cls(
            config.url,
            timeout_s=config.timeout_s,
            alert_service_label=alert_service_label,
            clock=clock,
        )

    def _get(self, path: str) -> list:
        try:
            response = self.session.get(f"{self.url}{path}", timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"cannot reach Alertmanager at {self.url}: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise SourceUnavailable(
                f"Alertmanager refused {path}: HTTP {response.status_code} {response.text[:200]}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceUnavailable(f"Alertmanager answered {path} with no JSON: {exc}") from exc
        if not isinstance(body, list):
            raise SourceUnavailable(f"Alertmanager answered {path} malformed: not a list")
        return body

    def collect(self) -> list[AlertsUpdate]:
        """Read the alerts and silences once; raise SourceUnavailable if either fails."""
        observed_at = self.clock()
        silences = self._silences()
        alerts = []
        try:
            for item in self._get("/api/v2/alerts"):
                labels = {str(k): str(v) for k, v in item["labels"].items()}
                status = item.get("status") or {}
                state = str(status.get("state", "active"))
                silenced_by = [str(s) for s in status.get("silencedBy") or []]
                inhibited_by = tuple(str(s) for s in status.get("inhibitedBy") or [])
                alerts.append(
                    FiringAlert(
                        name=labels.get("alertname", ""),
                        labels=labels,
                        service=labels.get(self.alert_service_label, ""),
                        annotations={
                            str(k): str(v) for k, v in (item.get("annotations") or {}).items()
                        },
                        # "unprocessed": received, not yet routed; it fires all the same.
                        state="suppressed" if state == "suppressed" else "active",
                        active_at=parse_time(item.get("startsAt")),
                        silenced=bool(silenced_by),
                        silences=tuple(
                            silences.get(sid) or AlertSilence(sid) for sid in silenced_by
                        ),
                        inhibited=bool(inhibited_by),
                        inhibited_by=inhibited_by,
                    )
                )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SourceUnavailable(
                f"Alertmanager answered /api/v2/alerts malformed: {exc}"
            ) from exc
        return [AlertsUpdate(observed_at, tuple(alerts))]

    def _silences(self) -> dict[str, AlertSilence]:
        silences = {}
        try:
            for item in self._get("/api/v2/silences"):
                silence = AlertSilence(
                    id=str(item["id"]),
                    created_by=str(item.get("createdBy", "")),
                    comment=str(item.get("comment", "")),
                    starts_at=parse_time(item.get("startsAt")),
                    ends_at=parse_time(item.get("endsAt")),
                    matchers=tuple(
                        {
                            "name": str(m["name"]),
                            "value": str(m["value"]),
                            "isRegex": bool(m.get("isRegex", False)),
                            "isEqual": bool(m.get("isEqual", True)),
                        }
                        for m in item.get("matchers") or []
                    ),
                )
                silences[silence.id] = silence
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            reason = f"Alertmanager answered /api/v2/silences malformed: {exc}"
            raise SourceUnavailable(reason) from exc
        return silences
