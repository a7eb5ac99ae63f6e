"""What is going on, in a few sentences: the Overview's first card, worst first.

Each line is built from what the Overview already read (services, disagreements, alerts,
proposals, SLOs, sources) plus the idempotency events of the last minutes; nothing here is
guessed. A line is a severity, words and the names it is about (rendered as links), so the
template escapes every name from the fleet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import IdemEventRow
from app.queries.idempotency import ConflictFilters, read_storms

# The Overview names this many services, at most, before "and N more".
NAMED = 3
# Idempotency events count as "now" over this window.
RECENT = timedelta(minutes=15)


@dataclass(frozen=True)
class Named:
    """A name in a line, with where it leads."""

    text: str
    endpoint: str
    args: dict = field(default_factory=dict)
    anchor: str = ""


@dataclass(frozen=True)
class NowLine:
    """One sentence of the Now card: `before`, the names, then `after`."""

    severity: str  # critical | warning | info | passing
    before: str
    names: tuple[Named, ...] = ()
    after: str = ""
    kind: str = ""  # what it is about, for tests and styling


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def service_lines(unhealthy: Sequence) -> list[NowLine]:
    """One line per state among the services that need attention, the worst state first."""
    lines = []
    for state, severity in (("critical", "critical"), ("warning", "warning")):
        services = [s for s in unhealthy if s.health == state]
        if not services:
            continue
        names = tuple(
            Named(
                f"{s.name} ({getattr(s, f'n_{state}')} of {_plural(s.n_total, 'instance')})",
                "services.detail",
                {"name": s.name},
            )
            for s in services[:NAMED]
        )
        more = len(services) - NAMED
        after = f" and {_plural(more, 'more service')}" if more > 0 else ""
        verb = "is" if len(services) == 1 else "are"
        lines.append(NowLine(severity, "", names, f"{after} {verb} {state}.", kind=state))
    rest = [s for s in unhealthy if s.health in ("maintenance", "unknown")]
    if rest:
        counts = Counter(s.health for s in rest)
        said = " and ".join(
            f"{_plural(n, 'service')} {state if state == 'unknown' else 'in ' + state}"
            for state, n in sorted(counts.items())
        )
        lines.append(NowLine("info", f"{said[0].upper()}{said[1:]}.", kind="other-health"))
    return lines


def idempotency_lines(db: Session, now: datetime, storm_per_min: int) -> list[NowLine]:
    """Retry storms and payload mismatches of the last RECENT, by service."""
    since_ms = int((now - RECENT).timestamp() * 1000)
    lines = []
    storms = read_storms(db, ConflictFilters(since_ms=since_ms), storm_per_min, limit=50)
    by_service: dict[str, int] = {}
    for storm in storms:
        by_service[storm.service] = max(by_service.get(storm.service, 0), storm.count)
    for service, peak in sorted(by_service.items(), key=lambda kv: -kv[1])[:NAMED]:
        lines.append(
            NowLine(
                "warning",
                "A retry storm on ",
                (Named(service, "idempotency.index", {"service": service}),),
                f": one key hit {peak} times in a minute.",
                kind="storm",
            )
        )
    mismatches = db.execute(
        select(IdemEventRow.service, func.count())
        .where(IdemEventRow.kind == "payload_mismatch", ~IdemEventRow.malformed)
        .where(IdemEventRow.at_ms >= since_ms)
        .group_by(IdemEventRow.service)
        .order_by(func.count().desc())
        .limit(NAMED)
    ).all()
    for service, n in mismatches:
        lines.append(
            NowLine(
                "warning",
                f"{_plural(n, 'payload mismatch', 'payload mismatches')} on ",
                (
                    Named(
                        service,
                        "idempotency.index",
                        {"service": service, "kind": "payload_mismatch"},
                    ),
                ),
                " in the last 15 minutes: a key reused for another request.",
                kind="mismatch",
            )
        )
    return lines


def now_lines(
    db: Session,
    now: datetime,
    *,
    unhealthy: Sequence,
    stale_sources: Sequence,
    disagreement_count: int,
    alert_count: int,
    proposals: Sequence[dict],
    slo_burning: int,
    storm_per_min: int,
) -> list[NowLine]:
    """Say what is going on, worst first; one 'all quiet' line when nothing is."""
    lines: list[NowLine] = []
    if stale_sources:
        names = tuple(Named(s.name, "sources.index") for s in stale_sources[:NAMED])
        lines.append(
            NowLine(
                "warning",
                "Stale: ",
                names,
                " stopped answering; what they feed below may be out of date.",
                kind="stale",
            )
        )
    lines += service_lines(unhealthy)
    for p in proposals[:NAMED]:
        lines.append(
            NowLine(
                "warning",
                f"Rule {p['rule']} proposes {p['runbook']} on ",
                (Named(p["target"], "overview.index", anchor="proposals"),),
                ": approve or dismiss it below.",
                kind="proposal",
            )
        )
    if disagreement_count:
        lines.append(
            NowLine(
                "warning",
                "",
                (
                    Named(
                        _plural(disagreement_count, "disagreement"),
                        "overview.index",
                        anchor="disagreements",
                    ),
                ),  # fmt: skip
                " between Consul's checks and the balancers or Prometheus.",
                kind="disagreement",
            )
        )
    if alert_count:
        lines.append(
            NowLine(
                "critical",
                "",
                (Named(_plural(alert_count, "alert"), "overview.index", anchor="firing-alerts"),),
                " firing in Prometheus.",
                kind="alerts",
            )
        )
    if slo_burning:
        lines.append(
            NowLine(
                "warning",
                "",
                (Named(_plural(slo_burning, "SLO"), "overview.index", anchor="overview-slo"),),
                " burning error budget faster than allowed.",
                kind="slo",
            )
        )
    lines += idempotency_lines(db, now, storm_per_min)
    if not lines:
        lines.append(
            NowLine(
                "passing",
                "All quiet: every service passing, no alert firing, nothing proposed.",
                kind="quiet",
            )
        )
    return lines
