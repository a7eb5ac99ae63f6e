"""Read idempotency conflicts: the list, counts per kind, the chart, top keys, storms, risks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Select, func, select

from app.models import IdemEventRow, InflightKeyRow, RedisSnapshotRow
from collectors.redis_idem import KINDS

# Chart buckets: the window divided into about this many bars.
CHART_BARS = 48
# The chart by service shows the busiest ones; the rest add up as "other".
CHART_SERVICES = 5
TOP_KEYS = 10
STORMS = 20
AT_RISK = 50


@dataclass(frozen=True)
class ConflictFilters:
    """What the page and the API narrow conflicts by; None/"" means no narrowing."""

    service: str = ""
    kind: str = ""
    since_ms: int | None = None
    until_ms: int | None = None

    def apply(self, query: Select) -> Select:
        """Add these filters to a query over IdemEventRow."""
        if self.service:
            query = query.where(IdemEventRow.service == self.service)
        if self.kind:
            query = query.where(IdemEventRow.kind == self.kind)
        if self.since_ms is not None:
            query = query.where(IdemEventRow.at_ms >= self.since_ms)
        if self.until_ms is not None:
            query = query.where(IdemEventRow.at_ms < self.until_ms)
        return query


@dataclass(frozen=True)
class Conflict:
    """One stored event as the page and the API show it."""

    id: int
    entry_id: str
    service: str
    instance: str
    key: str
    kind: str
    at_ms: int
    trace_id: str
    fingerprint: str
    held_ms: int | None
    ttl_ms: int | None
    malformed: bool
    problems: str

    @property
    def at(self) -> datetime:
        return ms_to_datetime(self.at_ms)

    def to_json(self) -> dict:
        """Render as an entry of `conflicts` (DESIGN §5; trace_id null when there is none)."""
        return {
            "id": self.entry_id,
            "service": self.service,
            "instance": self.instance,
            "key": self.key,
            "kind": self.kind,
            "at": rfc3339_ms(self.at_ms),
            "trace_id": self.trace_id or None,
            "fingerprint": self.fingerprint or None,
            "held_ms": self.held_ms,
            "ttl_ms": self.ttl_ms,
            "malformed": self.malformed,
            "problems": self.problems.split("; ") if self.problems else [],
        }


@dataclass(frozen=True)
class ChartSeries:
    """Counts per bucket for one name (a kind or a service)."""

    name: str
    counts: list[int]


@dataclass(frozen=True)
class Chart:
    """Events per time bucket, one series per kind or per service."""

    start_ms: int
    bucket_ms: int
    series: list[ChartSeries]

    @property
    def bars(self) -> int:
        return len(self.series[0].counts) if self.series else 0

    @property
    def totals(self) -> list[int]:
        return [sum(s.counts[i] for s in self.series) for i in range(self.bars)]

    @property
    def peak(self) -> int:
        return max(self.totals, default=0)

    def bucket_at(self, index: int) -> datetime:
        return ms_to_datetime(self.start_ms + index * self.bucket_ms)


@dataclass(frozen=True)
class KeyFigure:
    """A key with how often it conflicted (top keys) or in one minute (storms)."""

    service: str
    key: str
    count: int
    minute_at: datetime | None = None
    kinds: tuple[str, ...] = ()


@dataclass
class IdempotencyView:
    """Everything the Idempotency page shows."""

    conflicts: list[Conflict]
    total: int
    counts: dict[str, int]
    by_kind: Chart
    by_service: Chart
    top_keys: list[KeyFigure]
    storms: list[KeyFigure]
    mismatches: list[Conflict]
    at_risk: list[InflightKeyRow]
    inflight_total: int
    snapshot: RedisSnapshotRow | None
    services: list[str] = field(default_factory=list)


def ms_to_datetime(at_ms: int) -> datetime:
    """Turn Unix milliseconds into an aware UTC datetime."""
    return datetime.fromtimestamp(at_ms / 1000, UTC)


def rfc3339_ms(at_ms: int) -> str:
    """Format Unix milliseconds as RFC 3339 UTC with milliseconds and Z."""
    return ms_to_datetime(at_ms).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def datetime_to_ms(at: datetime) -> int:
    """Turn an aware datetime into Unix milliseconds."""
    return int(at.timestamp() * 1000)


def read_conflicts(db, filters: ConflictFilters, limit: int, offset: int) -> list[Conflict]:
    """Return conflicts newest first, narrowed by the filters."""
    query = filters.apply(select(IdemEventRow))
    query = query.order_by(IdemEventRow.at_ms.desc(), IdemEventRow.id.desc())
    rows = db.scalars(query.limit(limit).offset(offset))
    return [_conflict(row) for row in rows]


def read_counts(db, filters: ConflictFilters) -> dict[str, int]:
    """Count valid events per kind (every kind, zero included) and malformed entries."""
    counts = dict.fromkeys(KINDS, 0)
    query = select(IdemEventRow.kind, IdemEventRow.malformed, func.count())
    query = filters.apply(query).group_by(IdemEventRow.kind, IdemEventRow.malformed)
    malformed = 0
    for kind, is_malformed, count in db.execute(query):
        if is_malformed:
            malformed += count
        else:
            counts[kind] = counts.get(kind, 0) + count
    counts["malformed"] = malformed
    return counts


def read_chart(db, filters: ConflictFilters, start_ms: int, end_ms: int, by: str) -> Chart:
    """Count events per bucket between two times, per kind (`by="kind"`) or per service."""
    bucket_ms = max(60_000, -(-(end_ms - start_ms) // CHART_BARS))
    bucket_ms = -(-bucket_ms // 60_000) * 60_000  # whole minutes
    start_ms -= start_ms % bucket_ms
    bars = max(1, -(-(end_ms - start_ms) // bucket_ms))
    column = IdemEventRow.kind if by == "kind" else IdemEventRow.service
    bucket = ((IdemEventRow.at_ms - start_ms) // bucket_ms).label("bucket")
    scoped = ConflictFilters(filters.service, filters.kind, start_ms, end_ms)
    query = scoped.apply(select(column, bucket, func.count()).where(~IdemEventRow.malformed))
    grid: dict[str, list[int]] = {}
    for name, index, count in db.execute(query.group_by(column, bucket)):
        if 0 <= int(index) < bars:
            grid.setdefault(name, [0] * bars)[int(index)] += count
    if by == "kind":
        names = [k for k in KINDS if k in grid]
    else:
        names = sorted(grid, key=lambda n: (-sum(grid[n]), n))
        if len(names) > CHART_SERVICES:
            other = [0] * bars
            for name in names[CHART_SERVICES:]:
                other = [a + b for a, b in zip(other, grid[name], strict=True)]
            names = names[:CHART_SERVICES]
            grid["(other services)"] = other
            names.append("(other services)")
    return Chart(start_ms, bucket_ms, [ChartSeries(n, grid[n]) for n in names])


def read_top_keys(db, filters: ConflictFilters, limit: int = TOP_KEYS) -> list[KeyFigure]:
    """Return the keys with the most valid events."""
    count = func.count().label("n")
    query = select(IdemEventRow.service, IdemEventRow.key, count).where(~IdemEventRow.malformed)
    query = filters.apply(query).group_by(IdemEventRow.service, IdemEventRow.key)
    rows = db.execute(query.order_by(count.desc(), IdemEventRow.key).limit(limit)).all()
    figures = []
    for service, key, n in rows:
        kinds = select(IdemEventRow.kind).distinct()
        kinds = filters.apply(kinds).where(IdemEventRow.service == service, IdemEventRow.key == key)
        figures.append(KeyFigure(service, key, n, kinds=tuple(sorted(db.scalars(kinds)))))
    return figures


def read_storms(db, filters: ConflictFilters, per_min: int, limit: int = STORMS) -> list[KeyFigure]:
    """Return keys with more than `per_min` valid events within one calendar minute."""
    minute = (IdemEventRow.at_ms // 60_000).label("minute")
    count = func.count().label("n")
    query = select(IdemEventRow.service, IdemEventRow.key, minute, count)
    query = filters.apply(query.where(~IdemEventRow.malformed))
    query = query.group_by(IdemEventRow.service, IdemEventRow.key, minute)
    query = query.having(func.count() > per_min).order_by(count.desc(), minute.desc())
    return [
        KeyFigure(service, key, n, minute_at=ms_to_datetime(int(m) * 60_000))
        for service, key, m, n in db.execute(query.limit(limit))
    ]


def read_at_risk(db, limit: int = AT_RISK) -> tuple[list[InflightKeyRow], int]:
    """Return the in-flight keys at risk (most overdue first) and how many keys were seen."""
    total = db.scalar(select(func.count()).select_from(InflightKeyRow)) or 0
    overdue = InflightKeyRow.running_ms - InflightKeyRow.ttl_left_ms
    query = select(InflightKeyRow).where(InflightKeyRow.at_risk).order_by(overdue.desc())
    return list(db.scalars(query.limit(limit))), total


def read_services(db) -> list[str]:
    """Return every service that sent events, for the filter."""
    query = select(IdemEventRow.service).where(IdemEventRow.service != "").distinct()
    return sorted(db.scalars(query.order_by(IdemEventRow.service).limit(500)))


def read_idempotency_view(
    db, filters: ConflictFilters, now_ms: int, *, storm_per_min: int, limit: int, offset: int
) -> IdempotencyView:
    """Read everything the Idempotency page shows for these filters."""
    start_ms = filters.since_ms if filters.since_ms is not None else now_ms - 3_600_000
    end_ms = filters.until_ms if filters.until_ms is not None else now_ms
    counts = read_counts(db, filters)
    total = sum(counts.values())
    mismatch_filters = ConflictFilters(filters.service, "payload_mismatch", filters.since_ms)
    at_risk, inflight_total = read_at_risk(db)
    return IdempotencyView(
        conflicts=read_conflicts(db, filters, limit, offset),
        total=total,
        counts=counts,
        by_kind=read_chart(db, filters, start_ms, end_ms, "kind"),
        by_service=read_chart(db, filters, start_ms, end_ms, "service"),
        top_keys=read_top_keys(db, filters),
        storms=read_storms(db, filters, storm_per_min),
        mismatches=(
            read_conflicts(db, mismatch_filters, 20, 0)
            if filters.kind in ("", "payload_mismatch")
            else []
        ),
        at_risk=at_risk,
        inflight_total=inflight_total,
        snapshot=db.scalar(select(RedisSnapshotRow).order_by(RedisSnapshotRow.source).limit(1)),
        services=read_services(db),
    )


def _conflict(row: IdemEventRow) -> Conflict:
    return Conflict(
        id=row.id,
        entry_id=row.entry_id,
        service=row.service,
        instance=row.instance,
        key=row.key,
        kind=row.kind,
        at_ms=row.at_ms,
        trace_id=row.trace_id,
        fingerprint=row.fingerprint,
        held_ms=row.held_ms,
        ttl_ms=row.ttl_ms,
        malformed=row.malformed,
        problems=row.problems,
    )
