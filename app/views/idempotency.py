"""The Idempotency page and `GET /api/v1/idempotency/conflicts` (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, abort, jsonify, request, url_for

from app.auth.access import require
from app.queries.idempotency import (
    ConflictFilters,
    datetime_to_ms,
    read_conflicts,
    read_counts,
    read_idempotency_view,
)
from app.quoting import quote_input
from app.views.common import current_sources, qd, query_number, render_page_or_part
from app.views.map_query import parse_time
from collectors.redis_idem import KINDS

bp = Blueprint("idempotency", __name__)
api_bp = Blueprint("idempotency_api", __name__, url_prefix="/api/v1")

# The page's time windows when no `since` is given; the first is the default.
WINDOWS = {"1h": timedelta(hours=1), "15m": timedelta(minutes=15), "6h": timedelta(hours=6),
           "24h": timedelta(hours=24), "7d": timedelta(days=7)}  # fmt: skip
PAGE_SIZE = 50
# Every kind the filters take: the DESIGN §6 kinds; malformed entries keep the kind they had.
KIND_CHOICES = KINDS


@dataclass(frozen=True)
class PageQuery:
    """The page's URL arguments, kept to build links that keep them."""

    service: str
    kind: str
    since: str
    window: str
    offset: int

    def args(self, **changes) -> dict[str, str | int]:
        """Return the non-empty arguments, with some changed, for url_for."""
        values = {"service": self.service, "kind": self.kind, "since": self.since,
                  "window": self.window, "offset": self.offset, **changes}  # fmt: skip
        return {k: v for k, v in values.items() if v not in ("", 0, None)}


def _filters(args, now: datetime) -> tuple[ConflictFilters, str]:
    """Read service, kind and since; abort 400 naming the field that is wrong."""
    service = args.get("service", "")
    if len(service) > 255:
        abort(400, "service must be at most 255 characters")
    kind = args.get("kind", "")
    if kind and kind not in KIND_CHOICES:
        abort(400, f"kind must be one of {', '.join(KIND_CHOICES)}, not {quote_input(kind)}")
    since_ms = None
    raw_since = args.get("since", "")
    if raw_since:
        since = parse_time(raw_since)
        if since is None:
            abort(
                400,
                "since must be an RFC 3339 time like 2026-12-02T04:00:00Z, "
                f"not {quote_input(raw_since)}",
            )
        since_ms = datetime_to_ms(since)
    return ConflictFilters(service, kind, since_ms), raw_since


@bp.get("/idempotency")
@require("viewer")
def index():
    """Show conflicts over time, top keys, retry storms, mismatches and keys at risk."""
    ctx = qd()
    now = ctx.clock()
    filters, since = _filters(request.args, now)
    window = request.args.get("window", "") or "1h"
    if window not in WINDOWS:
        abort(400, f"window must be one of {', '.join(WINDOWS)}, not {quote_input(window)}")
    if filters.since_ms is None:
        filters = ConflictFilters(
            filters.service, filters.kind, datetime_to_ms(now - WINDOWS[window])
        )
    offset = query_number(request.args, "offset", default=0, maximum=1_000_000)
    storm_per_min = ctx.config.redis.storm_per_min if ctx.config.redis else 10
    with ctx.store.session() as db:
        view = read_idempotency_view(
            db, filters, datetime_to_ms(now), storm_per_min=storm_per_min,
            limit=PAGE_SIZE, offset=offset,
        )  # fmt: skip
        redis_sources = [s for s in current_sources(db) if s.kind == "redis"]
    page = PageQuery(filters.service, filters.kind, since, "" if since else window, offset)
    return render_page_or_part(
        "idempotency/index.html",
        "idempotency/_body.html",
        view=view,
        query=page,
        kinds=KINDS,
        windows=list(WINDOWS),
        storm_per_min=storm_per_min,
        redis_configured=ctx.config.redis is not None,
        redis_source=redis_sources[0] if redis_sources else None,
        page_size=PAGE_SIZE,
        self_url=url_for("idempotency.index", **page.args()),
    )


@api_bp.get("/idempotency/conflicts")
@require("viewer")
def conflicts():
    """Return conflicts newest first and counts per kind, narrowed by service, kind and since."""
    ctx = qd()
    filters, _ = _filters(request.args, ctx.clock())
    limit = query_number(request.args, "limit", default=100, minimum=1, maximum=5000)
    offset = query_number(request.args, "offset", default=0)
    with ctx.store.session() as db:
        found = read_conflicts(db, filters, limit, offset)
        counts = read_counts(db, filters)
    return jsonify({"conflicts": [c.to_json() for c in found], "counts": counts})
