"""Read `GET /api/v1/map`'s query arguments into a MapRequest; 400 names a bad field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import abort
from werkzeug.exceptions import NotFound

from app.config import Config, MapConfig
from app.queries.map import MapRequest, UnknownService, map_json
from app.queries.map_graph import DEFAULT_WINDOW
from app.queries.verdict import rules_from
from app.quoting import quote_input
from app.views.common import qd, query_number
from collectors.base import SourceUnavailable
from collectors.prometheus import PrometheusReader
from collectors.prometheus_edges import EdgeReading, read_edges

_DURATION = re.compile(r"(\d{1,6})(s|m|h|d)")
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_WINDOW = timedelta(days=31)
MAX_HOPS = 10
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False, "": False}


def parse_duration(text: str) -> timedelta | None:
    """Read "90s", "15m", "1h" or "2d"; None when the text is not one."""
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_time(text: str) -> datetime | None:
    """Read an RFC 3339 time with its offset ("Z" or ±hh:mm); None when the text is not one."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    fraction = (match.group(2) or "")[:7]  # Python reads at most microseconds
    try:
        return datetime.fromisoformat(match.group(1) + fraction + match.group(3))
    except ValueError:
        return None


def _duration_or_time(args, name: str) -> timedelta | datetime | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    found = parse_duration(raw) or parse_time(raw)
    if found is None or (isinstance(found, timedelta) and not found):
        abort(
            400,
            f"{name} must be a duration like 15m, 1h or 2d, or an RFC 3339 time like "
            f"2026-12-02T04:00:00Z, not {quote_input(raw)}",
        )
    return found


def map_request_from(args, now: datetime, config: MapConfig) -> MapRequest:
    """Validate the query arguments (DESIGN §5: ?service=&hops=&unhealthy=&since=&compare=)."""
    since = _duration_or_time(args, "since")
    if since is None:
        start = now - DEFAULT_WINDOW
    elif isinstance(since, timedelta):
        start = now - since
    else:
        start = since.astimezone(UTC)
    if start >= now:
        abort(400, "since must be in the past")
    if now - start > MAX_WINDOW:
        abort(400, "since must be at most 31 days back")
    length = now - start
    compare = _duration_or_time(args, "compare")
    compare_start = compare_end = None
    if isinstance(compare, timedelta):
        compare_end = now - compare
    elif isinstance(compare, datetime):
        # A time names the end of the earlier window: "how did it look at T".
        compare_end = compare.astimezone(UTC)
        if compare_end > now:
            abort(400, "compare must not be in the future")
    if compare_end is not None:
        compare_start = compare_end - length
    unhealthy = (args.get("unhealthy") or "").lower()
    if unhealthy not in _BOOLEANS:
        abort(400, f"unhealthy must be true or false, not {quote_input(args.get('unhealthy'))}")
    service = args.get("service")
    hops = query_number(args, "hops", default=1, minimum=1, maximum=MAX_HOPS)
    if args.get("hops") and not service:
        abort(400, "hops needs service: it counts calls away from the focused service")
    limit = query_number(args, "limit", default=config.node_limit, minimum=10, maximum=5000)
    return MapRequest(
        start=start,
        end=now,
        service=service or None,
        hops=hops,
        unhealthy=_BOOLEANS[unhealthy],
        compare_start=compare_start,
        compare_end=compare_end,
        node_limit=limit,
        group_by=config.group_by,
    )


def prometheus_edges_for(
    config: Config, asked: MapRequest
) -> tuple[list[EdgeReading], list[EdgeReading], list[str]]:
    """Ask Prometheus for the edges now (and at the compared time); a failure is a note.

    The map still answers from its other evidence when Prometheus does not: the note says so.
    """
    query = config.map.edge_query
    if not query or config.prometheus is None:
        return [], [], []
    reader = PrometheusReader(config.prometheus.url, config.prometheus.range_timeout_s)
    labels = (config.map.edge_source_label, config.map.edge_target_label)
    notes: list[str] = []
    current: list[EdgeReading] = []
    previous: list[EdgeReading] = []
    try:
        current = read_edges(reader, query, *labels)
        if asked.compare_end is not None:
            previous = read_edges(reader, query, *labels, at=asked.compare_end)
    except SourceUnavailable as exc:
        notes.append(f"prometheus edges missing: {exc.reason}")
    finally:
        reader.close()
    return current, previous, notes


def read_graph(args) -> dict:
    """Return the map for these query arguments exactly as `GET /api/v1/map` answers them.

    Both the API and the Map page call it; 400 and 404 come as exceptions.
    """
    ctx = qd()
    asked = map_request_from(args, ctx.clock(), ctx.config.map)
    current, previous, notes = prometheus_edges_for(ctx.config, asked)
    with ctx.store.session() as db:
        try:
            return map_json(db, asked, rules_from(ctx.config.verdict), current, previous, notes)
        except UnknownService:
            raise NotFound(f"no service named {quote_input(asked.service)} is on the map") from None
