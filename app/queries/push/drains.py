"""Drain progress: a server out of rotation, its connections falling to zero."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from app.queries.push.inputs import MemberCount, json_number, json_round
from app.queries.sources import iso

if TYPE_CHECKING:
    from app.queries.push.counts import InstanceCount

# The falling rate of a long drain is measured over its latest minutes, not since its start.
DRAIN_RATE_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class DrainProgress:
    """How far a server taken out of rotation is from holding no connections."""

    service: str
    instance: str
    balancer: str
    backend: str
    server: str
    state: str
    status: str
    connections: float | None  # now
    source: str | None  # where `connections` comes from
    stale: bool
    started_at: datetime | None
    at_start: float | None
    falling_per_min: float | None  # connections per minute, positive while falling
    time_left_s: float | None  # at the current rate; 0 when drained, None when not falling

    @property
    def drained(self) -> bool:
        """Whether it holds no connection any more."""
        return self.connections == 0

    def to_json(self) -> dict:
        """Render as `drains[]`."""
        return {
            "service": self.service,
            "instance": self.instance,
            "balancer": self.balancer,
            "backend": self.backend,
            "server": self.server,
            "state": self.state,
            "status": self.status,
            "connections": json_number(self.connections),
            "source": self.source,
            "stale": self.stale,
            "started_at": iso(self.started_at),
            "at_start": json_number(self.at_start),
            "falling_per_min": json_round(self.falling_per_min),
            "time_left_s": json_round(self.time_left_s, 0),
            "drained": self.drained,
        }


def drain_progress(
    counted: InstanceCount, member: MemberCount, history: Sequence[tuple[datetime, float]]
) -> DrainProgress:
    """Measure a drain: connections now and at its start, the falling rate, the time left.

    `history` is the member's observed connections, oldest first. Without a per-server count
    (nginx `down`), the instance's count from another source (the Prometheus gauge) is used.
    """
    if member.sessions is not None:
        now_value, source, stale = float(member.sessions), member.balancer, member.stale
        now_at = member.observed_at
    else:
        now_value, source = counted.connections, counted.source
        stale, now_at = counted.stale, counted.observed_at or member.observed_at
    started_at = member.state_since
    points = sorted(history, key=lambda p: p[0])
    at_start = _value_at(points, started_at) if started_at else None
    rate = None
    time_left = None
    if now_value is not None:
        if now_value == 0:
            time_left = 0.0
        rate = _falling_rate(points, started_at, at_start, now_at, now_value)
        if rate is not None and rate > 0 and now_value > 0:
            time_left = now_value / rate * 60
    return DrainProgress(
        service=member.service,
        instance=member.instance,
        balancer=member.balancer,
        backend=member.backend,
        server=member.server,
        state=member.state,
        status=member.status,
        connections=now_value,
        source=source,
        stale=stale,
        started_at=started_at,
        at_start=at_start,
        falling_per_min=rate,
        time_left_s=time_left,
    )


def _value_at(points: Sequence[tuple[datetime, float]], at: datetime) -> float | None:
    """The last observation at or before `at`, else the first one after it."""
    before = [v for t, v in points if t <= at]
    if before:
        return before[-1]
    after = [v for t, v in points if t > at]
    return after[0] if after else None


def _falling_rate(
    points: Sequence[tuple[datetime, float]],
    started_at: datetime | None,
    at_start: float | None,
    now_at: datetime,
    now_value: float,
) -> float | None:
    """Connections lost per minute over the drain so far, or over its latest minutes."""
    window_start = now_at - DRAIN_RATE_WINDOW
    if started_at is not None and started_at >= window_start:
        ref_at, ref_value = started_at, at_start
    else:
        ref_at = window_start
        ref_value = _value_at(points, window_start) if points else None
        if ref_value is None and started_at is not None:
            ref_at, ref_value = started_at, at_start
    if ref_value is None:
        return None
    elapsed_s = (now_at - ref_at).total_seconds()
    if elapsed_s < 1:
        return None
    return (ref_value - now_value) / elapsed_s * 60
