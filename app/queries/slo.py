"""Service level objectives: error budget left and multi-window, multi-burn-rate alerts.

The alerting follows the Google SRE workbook, "Alerting on SLOs" (its recommended scheme 6):
an alert holds while the burn rate exceeds the factor over both a long window and a short one
(a twelfth of it, so the alert stops soon after the burning does). docs/slo.md has the figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Config, SloConfig
from app.models import ProbeState
from app.queries.slo_events import Events, check_events, probe_events, span_events
from app.queries.sources import iso
from collectors.base import SourceUnavailable
from collectors.prometheus import PrometheusReader, fill_template


@dataclass(frozen=True)
class BurnAlert:
    """Fire `severity` while the burn rate is above `factor` over both windows."""

    severity: str  # "fast" pages, "slow" opens a ticket
    long: str
    short: str
    factor: float


# The workbook's table for a 30-day objective: 2 % of the budget spent in 1 h (14.4 = 0.02 x
# 720 h / 1 h), 5 % in 6 h, 10 % in 1 d and 10 % in 3 d. Kept as they are for any window.
BURN_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert("fast", "1h", "5m", 14.4),
    BurnAlert("fast", "6h", "30m", 6.0),
    BurnAlert("slow", "1d", "2h", 3.0),
    BurnAlert("slow", "3d", "6h", 1.0),
)
WINDOWS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
}
# Worst first.
ALERT_STATES = ("fast", "slow", "ok", "no_data")


def window_label(days: int) -> str:
    """The objective's own window as a label beside the burn windows ("28d")."""
    return f"{days}d"


@dataclass
class Objective:
    """One objective of an SLO (availability or latency) judged over every window."""

    kind: str  # "availability" or "latency"
    objective: float  # percent
    bad_ratio: dict[str, float | None]
    burn_rate: dict[str, float | None]
    error_budget_left: float | None
    budget_spent: float | None
    alert: str
    alerts: list[dict] = field(default_factory=list)


def judge_objective(
    kind: str, objective: float, window: str, ratios: dict[str, float | None]
) -> Objective:
    """Turn the bad ratio of each window into burn rates, the budget left and the alert state.

    Burn rate = bad ratio / (1 - objective): 1 spends the budget exactly over the window. The
    budget left is 1 - the bad ratio over the whole window / (1 - objective), never below 0;
    `budget_spent` keeps the unclamped share (above 1: overspent).
    """
    allowed = 1 - objective / 100
    burn = {w: (None if r is None else r / allowed) for w, r in ratios.items()}
    whole = ratios.get(window)
    spent = None if whole is None else whole / allowed
    left = None if spent is None else max(0.0, 1 - spent)
    alerts = []
    for rule in BURN_ALERTS:
        long_burn, short_burn = burn.get(rule.long), burn.get(rule.short)
        firing = (
            long_burn is not None
            and short_burn is not None
            and long_burn > rule.factor
            and short_burn > rule.factor
        )
        alerts.append(
            {
                "severity": rule.severity,
                "long": rule.long,
                "short": rule.short,
                "factor": rule.factor,
                "burn_long": long_burn,
                "burn_short": short_burn,
                "firing": firing,
            }
        )
    if any(a["firing"] and a["severity"] == "fast" for a in alerts):
        state = "fast"
    elif any(a["firing"] for a in alerts):
        state = "slow"
    elif all(r is None for r in ratios.values()):
        state = "no_data"
    else:
        state = "ok"
    return Objective(kind, objective, dict(ratios), burn, left, spent, state, alerts)


@dataclass
class SloState:
    """An SLO's objectives as judged now, and why a figure is missing if one is."""

    config: SloConfig
    availability: Objective
    latency: Objective | None
    problem: str = ""

    @property
    def alert(self) -> str:
        """The worse alert state of the two objectives."""
        states = [self.availability.alert] + ([self.latency.alert] if self.latency else [])
        return min(states, key=ALERT_STATES.index)


EventReader = Callable[[Sequence[str], datetime, datetime], dict[str, Events]]


def slo_states(
    db: Session,
    config: Config,
    now: datetime,
    services: Sequence[str] | None = None,
    prometheus=None,
) -> list[SloState]:
    """Judge every configured SLO (of the given services, if any) as of `now`.

    `prometheus` is a collectors.prometheus.PrometheusReader, needed for sli = "prometheus";
    when Prometheus cannot answer, those SLOs say why and show no figures.
    """
    chosen = [s for s in config.slo if services is None or s.service in services]
    states = []
    problems: dict[str, str] = {}
    readers: dict[tuple[str, float], EventReader] = {}
    cache: dict[tuple[str, float, str, int], dict[str, Events]] = {}

    def events(slo: SloConfig, latency_ms: float, label: str, span: timedelta):
        key = (slo.sli, latency_ms, label, slo.window_d)
        if slo.sli in problems:
            return None  # its source failed on an earlier window: do not wait on it again
        if key not in cache:
            names = [s.service for s in chosen if s.sli == slo.sli]
            reader = readers.setdefault(
                (slo.sli, latency_ms), _reader(db, config, slo.sli, latency_ms, prometheus)
            )
            try:
                cache[key] = reader(names, now - span, now)
            except SourceUnavailable as exc:
                problems[slo.sli] = exc.reason
                cache[key] = {}
        return cache[key].get(slo.service)

    for slo in chosen:
        window = window_label(slo.window_d)
        spans = {**WINDOWS, window: timedelta(days=slo.window_d)}
        ratios = {}
        for label, span in spans.items():
            found = events(slo, 0, label, span)
            ratios[label] = found.bad_ratio if found is not None else None
        availability = judge_objective("availability", slo.objective, window, ratios)
        latency = None
        if slo.latency_ms:
            ratios = {}
            for label, span in spans.items():
                found = events(slo, slo.latency_ms, label, span)
                ratios[label] = found.bad_ratio if found is not None else None
            latency = judge_objective("latency", slo.latency_objective, window, ratios)
        states.append(SloState(slo, availability, latency, problems.get(slo.sli, "")))
    return states


@contextmanager
def slo_prometheus(
    config: Config, services: Sequence[str] | None = None
) -> Iterator[PrometheusReader | None]:
    """A Prometheus reader while a chosen SLO reads sli = "prometheus", else None; closed after."""
    chosen = [s for s in config.slo if services is None or s.service in services]
    prom = config.prometheus
    reader = None
    if prom is not None and any(s.sli == "prometheus" for s in chosen):
        reader = PrometheusReader(prom.url, prom.timeout_s)
    try:
        yield reader
    finally:
        if reader is not None:
            reader.close()


def _reader(db: Session, config: Config, sli: str, latency_ms: float, prometheus) -> EventReader:
    if sli == "probes":
        return lambda names, since, until: probe_events(db, names, since, until, latency_ms)
    if sli == "spans":
        return lambda names, since, until: span_events(db, names, since, until, latency_ms)
    if sli == "checks":
        return lambda names, since, until: check_events(db, names, since, until)
    return lambda names, since, until: prometheus_events(config, prometheus, names, until - since)


# Pages that refresh live (the Overview) would otherwise ask Prometheus for every window, a
# 28-day range included, on every refresh: an answer is reused for this long.
PROMETHEUS_REUSE_S = 30.0
_answers: dict[tuple[str, str], tuple[float, list]] = {}
_answers_lock = threading.Lock()


def prometheus_events(config: Config, reader, services: Sequence[str], span: timedelta):
    """The error ratio of each service over `span`, from the [prometheus] error-ratio query.

    Prometheus gives a ratio, not counts: `total` is 1 and `bad` the ratio. One query answers
    for every service; it is reused for PROMETHEUS_REUSE_S seconds (failures are not).
    """
    if reader is None or config.prometheus is None:
        raise SourceUnavailable("no Prometheus to ask")
    prom = config.prometheus
    label = prom.service_label
    window = _promql_duration(span)
    query = fill_template(prom.template("error_ratio_query"), label, window)
    key = (prom.url, query)
    with _answers_lock:
        kept = _answers.get(key)
    if kept is not None and time.monotonic() - kept[0] < PROMETHEUS_REUSE_S:
        answer = kept[1]
    else:
        answer = reader.instant(f"the {window} error ratio", query)
        with _answers_lock:
            _answers[key] = (time.monotonic(), answer)
    wanted = set(services)
    found = {}
    for labels, value in answer:
        name = labels.get(label)
        if name in wanted and value is not None:
            found[name] = Events(1.0, value)
    return found


def _promql_duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def burn_states(db: Session, config: Config, now: datetime, prometheus=None) -> dict[str, str]:
    """Each SLO's service and its alert state now: fast, slow, ok or no_data (for rules)."""
    return {s.config.service: s.alert for s in slo_states(db, config, now, prometheus=prometheus)}


def burning_services(db: Session, now: datetime, params, config: Config, prometheus=None) -> dict:
    """The services whose SLO burns now, each with its evidence, for a rule's condition.

    `params["severity"]`: "fast" (the default) matches fast burns only; "slow" matches both.
    Evidence: the state, each objective's firing alerts with their burn rates, the budget left,
    the `sli`, and what must be fresh to act on it: `sources` (collector sources the SLI was
    read from) and `stale` (the service's probes whose last result is too old).
    """
    wanted = ("fast",) if params.get("severity", "fast") == "fast" else ("fast", "slow")
    found = {}
    for state in slo_states(db, config, now, prometheus=prometheus):
        if state.alert not in wanted:
            continue
        slo = state.config
        objectives = [state.availability] + ([state.latency] if state.latency else [])
        found[slo.service] = {
            "state": state.alert,
            "alerts": [
                {"objective": o.kind, **a} for o in objectives for a in o.alerts if a["firing"]
            ],
            "error_budget_left": state.availability.error_budget_left,
            "sli": slo.sli,
            "sources": _sli_sources(slo.sli, config),
            "stale": _stale_probes(db, slo.service, now) if slo.sli == "probes" else [],
        }
    return found


def _sli_sources(sli: str, config: Config) -> list[str]:
    """The collector sources an SLI reads; spans and probes are not collector sources."""
    if sli == "prometheus":
        return ["prometheus"]
    if sli == "checks" and config.consul is not None:
        return ["consul"]
    return []


def _stale_probes(db: Session, service: str, now: datetime) -> list[str]:
    old = select(ProbeState.name).where(
        ProbeState.service == service, ProbeState.fresh_until_at < now
    )
    rows = db.scalars(old)
    return [f"probe {name}" for name in sorted(rows)]


def _objective_json(found: Objective) -> dict:
    return {
        "objective": found.objective,
        "error_budget_left": found.error_budget_left,
        "budget_spent": found.budget_spent,
        "bad_ratio": found.bad_ratio,
        "burn_rate": found.burn_rate,
        "alert": found.alert,
        "alerts": found.alerts,
    }


def slo_json(state: SloState, now: datetime) -> dict:
    """Render DESIGN §5 `slo[]` for one SLO, with its latency objective beside it."""
    slo = state.config
    body = {
        "service": slo.service,
        "sli": slo.sli,
        "window_d": slo.window_d,
        **_objective_json(state.availability),
        "state": state.alert,
        "latency": None,
        "problem": state.problem,
        "at": iso(now),
    }
    if state.latency is not None:
        body["latency"] = {"threshold_ms": slo.latency_ms, **_objective_json(state.latency)}
    return body
