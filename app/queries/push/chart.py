"""The Push page's chart of the last hour: connections per service and in total over time.

The series come from Prometheus (a range query of the push gauge) when it is configured and
answers, else from the balancer store's 1-minute rollups. The chart's JSON is what
static/js/charts.js reads (a spec, and an "append" of the newest points on live updates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.queries.push.counts import PushConnections
from app.queries.push.inputs import json_number

CHART_WINDOW = timedelta(hours=1)
CHART_ID = "push-connections"
# More services than this are drawn in the total only: a legend of 50 lines helps nobody.
CHART_SERVICES_MAX = 8
TOTAL_KEY = "total"


@dataclass
class ConnectionsChart:
    """Times and one series per service plus their total, gaps as None."""

    source: str  # "prometheus", "rollups" or "" when there is no history
    step_s: int
    times: list[int] = field(default_factory=list)  # epoch seconds
    series: list[dict] = field(default_factory=list)  # {"key", "label", "values"}
    omitted_services: int = 0
    note: str = ""

    @property
    def empty(self) -> bool:
        """Whether there is no point at all."""
        return not self.times

    def spec(self) -> dict:
        """The chart's JSON for static/js/charts.js."""
        return {
            "id": CHART_ID,
            "unit": "connections",
            "window_s": int(CHART_WINDOW.total_seconds()),
            "source": self.source,
            "step_s": self.step_s,
            "times": self.times,
            "series": self.series,
        }

    def tail(self, points: int = 3) -> dict:
        """The newest points only, for a live append."""
        return {
            "times": self.times[-points:],
            "series": [dict(s, values=s["values"][-points:]) for s in self.series],
        }

    def summary(self) -> dict:
        """The total's latest, lowest and highest value (the chart's text without JavaScript)."""
        values = [v for v in self.series[0]["values"] if v is not None] if self.series else []
        if not values:
            return {}
        return {"last": values[-1], "low": min(values), "high": max(values)}


def build_chart(
    per_service: Mapping[str, Sequence[tuple[datetime, float | None]]],
    *,
    now: datetime,
    step_s: int,
    source: str,
    note: str = "",
) -> ConnectionsChart:
    """Put per-service points on one time grid of `step_s` over the last hour, plus a total.

    Points are bucketed to the grid (the last point of a bucket wins); a service without a
    point in a bucket has a gap there, and the total sums the services that have one.
    """
    start = now - CHART_WINDOW
    grid: dict[str, dict[int, float | None]] = {}
    for service, points in per_service.items():
        buckets: dict[int, float | None] = {}
        for at, value in sorted(points, key=lambda p: p[0]):
            # A range query's end is rounded to the second: its last point may pass `now`.
            if at < start or at > now + timedelta(seconds=step_s):
                continue
            buckets[_bucket(at, step_s)] = value
        if buckets:
            grid[service] = buckets
    chart = ConnectionsChart(source=source if grid else "", step_s=step_s, note=note)
    if not grid:
        return chart
    times = sorted({t for buckets in grid.values() for t in buckets})
    latest = {s: _last_known(b) for s, b in grid.items()}
    ranked = sorted(grid, key=lambda s: (-(latest[s] or 0), s))
    shown = ranked[:CHART_SERVICES_MAX]
    chart.omitted_services = len(ranked) - len(shown)
    totals = []
    for t in times:
        present = [grid[s][t] for s in grid if grid[s].get(t) is not None]
        totals.append(json_number(sum(present)) if present else None)
    chart.times = times
    chart.series = [{"key": TOTAL_KEY, "label": "All services", "values": totals}] + [
        {
            "key": f"service:{s}",
            "label": s,
            "values": [json_number(grid[s].get(t)) for t in times],
        }
        for s in sorted(shown)
    ]
    return chart


def _bucket(at: datetime, step_s: int) -> int:
    epoch = int(at.astimezone(UTC).timestamp())
    return epoch - epoch % step_s


def _last_known(buckets: Mapping[int, float | None]) -> float | None:
    for t in sorted(buckets, reverse=True):
        if buckets[t] is not None:
            return buckets[t]
    return None


def current_point(push: PushConnections, at: datetime) -> dict:
    """The counts of now as one chart point: the total and the largest services.

    A stale number is a gap, never a zero.
    """
    total = None if push.stale else push.total
    series = [{"key": TOTAL_KEY, "label": "All services", "values": [json_number(total)]}]
    ranked = sorted(push.services, key=lambda s: (-(s.total or 0), s.service))
    for s in sorted(ranked[:CHART_SERVICES_MAX], key=lambda s: s.service):
        value = None if s.stale else s.total
        series.append({"key": f"service:{s.service}", "label": s.service,
                       "values": [json_number(value)]})  # fmt: skip
    return {"times": [int(at.astimezone(UTC).timestamp())], "series": series}


def with_current_point(
    chart: ConnectionsChart, push: PushConnections, at: datetime
) -> ConnectionsChart:
    """Append the counts of now to a chart of the history, so that it reaches the present."""
    point = current_point(push, at)
    t = point["times"][0]
    if chart.times and t <= chart.times[-1]:
        return chart
    values = {s["key"]: s["values"][0] for s in point["series"]}
    if not chart.times:
        if all(v is None for v in values.values()):
            return chart
        chart.series = [{"key": s["key"], "label": s["label"], "values": []}
                        for s in point["series"]]  # fmt: skip
        chart.omitted_services = max(0, len(push.services) - CHART_SERVICES_MAX)
        chart.source = chart.source or "now"
    chart.times.append(t)
    for s in chart.series:
        s["values"].append(values.get(s["key"]))
    return chart
