"""Trace search, one trace's spans as a tree with its critical path, and two traces compared.

Search follows Jaeger's: service, operation, tags and the duration bounds all describe one
span of the trace (a trace matches when any of its spans satisfies every span filter at once);
the time range is on the trace's start. Results come from the `traces` summary rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import String as SqlString
from sqlalchemy import and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from app.models import Span, Trace
from app.models.traces import SPAN_KINDS, STATUS_CODES, STATUS_ERROR

ORDERS = ("recent", "slowest")
# A trace's detail stops here: a runaway trace would otherwise become one enormous page.
DETAIL_SPANS_MAX = 10_000
# Deeper than this, a span's subtree joins the critical path as if it had no children.
CRITICAL_PATH_DEPTH_MAX = 400
# Compare: a matched span this much slower (and at least 1 ms) is marked "slower".
COMPARE_RATIO = 1.1
COMPARE_MIN_NS = 1_000_000
NS_PER_MS = 1_000_000
# Newest first, a search whose span filters match this many spans or more looks back a
# quarter hour, then twice as far, until a page is full; fewer matches are simply sorted.
SEARCH_WINDOWED_FROM = 2000
SEARCH_WINDOW_FIRST_NS = 15 * 60 * 1_000_000_000


@dataclass(frozen=True)
class TraceSearch:
    """A trace search: span filters (one span must satisfy them all) and the trace's time range."""

    service: str = ""
    operation: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    min_ns: int | None = None
    max_ns: int | None = None
    error: bool = False
    since_ns: int | None = None  # trace start at or after
    until_ns: int | None = None  # trace start before
    order: str = "recent"
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class TraceSummary:
    """One search result: what the `traces` row and the trace's services say."""

    trace_id: str
    root_service: str
    root_operation: str
    start_ns: int
    end_ns: int
    span_count: int
    error_count: int
    services: tuple[str, ...]

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def error(self) -> bool:
        return self.error_count > 0

    def to_json(self) -> dict:
        return {
            "trace_id": self.trace_id,
            "root_service": self.root_service,
            "root_operation": self.root_operation,
            "start_at": iso_ns(self.start_ns),
            "duration_ms": ms(self.duration_ns),
            "span_count": self.span_count,
            "error": self.error,
            "services": list(self.services),
            "error_count": self.error_count,
        }


@dataclass(frozen=True)
class TracePage:
    """A page of search results, and whether a next page exists."""

    traces: list[TraceSummary]
    more: bool


def iso_ns(ns: int) -> str:
    """Format nanoseconds since the epoch as RFC 3339 UTC with microseconds and a Z."""
    seconds, rest = divmod(ns, 1_000_000_000)
    at = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def ms(ns: int) -> float:
    """Nanoseconds as milliseconds, to the microsecond."""
    return round(ns / NS_PER_MS, 3)


def _attribute_text(db: Session, key: str):
    """The attribute's value as text as the sender wrote it ("true", "200", "GET")."""
    attributes = Span.__table__.c.attributes
    if db.get_bind().dialect.name == "postgresql":
        return attributes.op("->>")(literal(key))
    path = literal('$."' + key + '"')  # the view refuses keys with `"` or `\`
    kind = func.json_type(attributes, path)
    return case(
        (kind == "true", "true"),
        (kind == "false", "false"),
        else_=cast(func.json_extract(attributes, path), SqlString),
    )


def _span_filters(db: Session, search: TraceSearch, *, by_time: bool = False) -> list:
    s = Span.__table__.c
    conditions = []
    # By time, the window narrows the spans: `+ 0` keeps SQLite off the duration index, which
    # would visit every long-enough span of the service, whatever its age. (PostgreSQL's
    # planner has the column statistics to choose well by itself, and does.)
    hint = by_time and db.get_bind().dialect.name == "sqlite"
    duration = s.duration_ns + 0 if hint else s.duration_ns
    if search.service:
        conditions.append(s.service == search.service)
    if search.operation:
        conditions.append(s.name == search.operation)
    if search.min_ns is not None:
        conditions.append(duration >= search.min_ns)
    if search.max_ns is not None:
        conditions.append(duration <= search.max_ns)
    if search.error:
        conditions.append(s.status_code == STATUS_ERROR)
    for key, value in search.tags:
        # A tag is a span attribute or a resource attribute (stored under "resource.").
        conditions.append(
            or_(
                _attribute_text(db, key) == value,
                _attribute_text(db, "resource." + key) == value,
            )
        )
    if conditions and search.since_ns is not None:
        # Every span starts at or after its trace's start: lets the span index skip old spans.
        conditions.append(s.start_ns >= search.since_ns)
    return conditions


def search_statement(db: Session, search: TraceSearch, *, by_time: bool = False):
    """The query behind a search: summary rows, one more than the page (to tell if more exist).

    `by_time`: the time range is what narrows the spans (a look-back window of a common match).
    """
    t = Trace.__table__.c
    statement = select(
        t.trace_id,
        t.root_service,
        t.root_operation,
        t.start_ns,
        t.end_ns,
        t.span_count,
        t.error_count,
    )
    span_filters = _span_filters(db, search, by_time=by_time)
    if span_filters:
        matching = select(Span.__table__.c.trace_id).where(and_(*span_filters))
        statement = statement.where(t.trace_id.in_(matching))
    if search.since_ns is not None:
        statement = statement.where(t.start_ns >= search.since_ns)
    if search.until_ns is not None:
        statement = statement.where(t.start_ns < search.until_ns)
    if search.order == "slowest":
        statement = statement.order_by((t.end_ns - t.start_ns).desc(), t.trace_id)
    else:
        statement = statement.order_by(t.start_ns.desc(), t.trace_id)
    return statement.limit(search.limit + 1).offset(search.offset)


def search_traces(
    db: Session, search: TraceSearch, *, windowed_from: int = SEARCH_WINDOWED_FROM
) -> TracePage:
    """Return the traces with a span matching every span filter, newest (or slowest) first."""
    if search.order == "recent" and _matches_many_spans(db, search, windowed_from):
        rows = _newest_rows(db, search)
    else:
        rows = db.execute(search_statement(db, search)).all()
    more = len(rows) > search.limit
    rows = rows[: search.limit]
    services = _services_of(db, [r.trace_id for r in rows])
    traces = [
        TraceSummary(*row, services=tuple(sorted(services.get(row.trace_id, ())))) for row in rows
    ]
    return TracePage(traces, more)


def _matches_many_spans(db: Session, search: TraceSearch, many: int) -> bool:
    """Tell whether the span filters match `many` spans or more (counting stops there)."""
    span_filters = _span_filters(db, search)
    if not span_filters:
        return False
    probe = select(literal(1)).where(and_(*span_filters)).limit(many).subquery()
    return db.scalar(select(func.count()).select_from(probe)) >= many


def _newest_rows(db: Session, search: TraceSearch) -> list:
    """Search the newest quarter hour of traces first, then twice as far back, and so on.

    A window that holds a whole page (after the offset) holds the newest page of all: every
    trace outside it started earlier. A common match is found in the first small window
    instead of sorting every match of the whole range; a rare one costs a few more reads.
    """
    t = Trace.__table__.c
    bounds = [t.start_ns < search.until_ns] if search.until_ns is not None else []
    # Two statements: SQLite reads a lone min() or max() from the index, not both at once.
    newest = db.scalar(select(func.max(t.start_ns)).where(*bounds))
    oldest = db.scalar(select(func.min(t.start_ns)))
    if newest is None:
        return []
    floor = max(oldest, search.since_ns) if search.since_ns is not None else oldest
    window = SEARCH_WINDOW_FIRST_NS
    while newest - window > floor:
        recent = replace(search, since_ns=newest - window)
        rows = db.execute(search_statement(db, recent, by_time=True)).all()
        if len(rows) > search.limit:
            return rows
        window *= 2
    return db.execute(search_statement(db, search)).all()


def _services_of(db: Session, trace_ids: Sequence[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    if not trace_ids:
        return found
    s = Span.__table__.c
    rows = db.execute(select(s.trace_id, s.service).where(s.trace_id.in_(trace_ids)).distinct())
    for trace_id, service in rows:
        found.setdefault(trace_id, set()).add(service)
    return found


def _distinct_values(db: Session, column, where=None) -> list[str]:
    """Distinct values of an indexed column by skipping through the index, not scanning it."""
    base = [where] if where is not None else []
    first = select(func.min(column)).where(*base).scalar_subquery()
    walk = select(first.label("value")).cte("walk", recursive=True)
    step = select(func.min(column)).where(*base, column > walk.c.value).scalar_subquery()
    walk = walk.union_all(select(step).where(walk.c.value.is_not(None)))
    return [v for (v,) in db.execute(select(walk.c.value)) if v is not None]


def trace_services(db: Session) -> list[str]:
    """Every service that has sent a span, in order (for the search form)."""
    return _distinct_values(db, Span.__table__.c.service)


def service_operations(db: Session, service: str) -> list[str]:
    """The span names (operations) a service has sent, in order."""
    s = Span.__table__.c
    return _distinct_values(db, s.name, s.service == service)


@dataclass(eq=False)
class SpanNode:
    """One span of a trace, placed in its tree, with its share of the critical path."""

    span_id: str
    parent_span_id: str
    service: str
    instance: str
    name: str
    kind: int
    start_ns: int
    duration_ns: int
    status_code: int
    status_message: str
    attributes: dict
    truncated: bool
    events: list
    events_count: int
    links_count: int
    depth: int = 0
    orphan: bool = False  # its parent is not in the trace (not arrived, or dropped)
    children: list[SpanNode] = field(default_factory=list)
    critical: list[tuple[int, int]] = field(default_factory=list)  # (start_ns, end_ns) pieces

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def error(self) -> bool:
        return self.status_code == STATUS_ERROR

    @property
    def critical_ns(self) -> int:
        return sum(end - start for start, end in self.critical)

    def to_json(self, trace_start_ns: int) -> dict:
        return {
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "service": self.service,
            "name": self.name,
            "kind": SPAN_KINDS.get(self.kind, "unspecified"),
            "start_at": iso_ns(self.start_ns),
            "duration_ms": ms(self.duration_ns),
            "status": STATUS_CODES.get(self.status_code, "unset"),
            "attributes": self.attributes,
            "status_message": self.status_message,
            "instance": self.instance,
            "offset_ms": ms(self.start_ns - trace_start_ns),
            "depth": self.depth,
            "critical_ms": ms(self.critical_ns),
            "events": self.events,
            "events_count": self.events_count,
            "links_count": self.links_count,
            "truncated": self.truncated,
        }


@dataclass
class TraceDetail:
    """A whole trace: its spans in tree order, its services and its critical path."""

    trace_id: str
    spans: list[SpanNode]  # depth-first, children by start time
    roots: list[SpanNode]
    span_count: int  # spans stored, which may be more than `spans` holds
    critical_path: list[SpanNode]

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for s in self.spans)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def cut(self) -> bool:
        return self.span_count > len(self.spans)

    def services(self) -> list[dict]:
        counts: dict[str, dict] = {}
        for s in self.spans:
            held = counts.setdefault(s.service, {"service": s.service, "spans": 0, "errors": 0})
            held["spans"] += 1
            held["errors"] += s.error
        return sorted(counts.values(), key=lambda c: c["service"])

    def to_json(self) -> dict:
        start = self.start_ns
        return {
            "trace_id": self.trace_id,
            "spans": [s.to_json(start) for s in self.spans],
            "start_at": iso_ns(start),
            "duration_ms": ms(self.duration_ns),
            "span_count": self.span_count,
            "spans_cut": self.cut,
            "services": self.services(),
            "critical_path": [
                {"span_id": s.span_id, "critical_ms": ms(s.critical_ns)} for s in self.critical_path
            ],
        }


def get_trace(db: Session, trace_id: str) -> TraceDetail | None:
    """Return one trace's spans as a tree with its critical path, or None when unknown."""
    s = Span.__table__.c
    columns = [getattr(s, f) for f in SpanNode.__dataclass_fields__ if hasattr(s, f)]
    rows = db.execute(
        select(*columns)
        .where(s.trace_id == trace_id)
        .order_by(s.start_ns, s.span_id)
        .limit(DETAIL_SPANS_MAX)
    ).all()
    if not rows:
        return None
    nodes = [SpanNode(**row._mapping) for row in rows]
    count = len(nodes)
    if count == DETAIL_SPANS_MAX:
        count = db.scalar(select(func.count()).where(s.trace_id == trace_id))
    ordered, roots = _place_in_tree(nodes)
    return TraceDetail(trace_id, ordered, roots, count, _critical_path(roots))


def _place_in_tree(nodes: list[SpanNode]) -> tuple[list[SpanNode], list[SpanNode]]:
    """Link children to parents; return the spans depth-first and the roots.

    Parent links come from the senders: a span whose parent is missing is a root (marked
    orphan), and spans caught in a parent cycle are cut loose at their earliest span.
    """
    by_id = {n.span_id: n for n in nodes}  # nodes come sorted by start
    roots = []
    for n in nodes:
        parent = by_id.get(n.parent_span_id) if n.parent_span_id else None
        if parent is None or parent is n:
            n.orphan = bool(n.parent_span_id)
            roots.append(n)
        else:
            parent.children.append(n)
    ordered: list[SpanNode] = []
    seen: set[str] = set()

    def walk(root: SpanNode) -> None:
        stack = [(root, 0)]
        while stack:
            node, depth = stack.pop()
            if node.span_id in seen:
                continue
            seen.add(node.span_id)
            node.depth = depth
            ordered.append(node)
            stack.extend((c, depth + 1) for c in reversed(node.children))

    # True roots first (no parent), then orphans, each in start order.
    roots.sort(key=lambda n: (n.orphan, n.start_ns))
    for root in roots:
        walk(root)
    for n in nodes:  # what is left hangs in a cycle: cut it at its earliest span
        if n.span_id not in seen:
            n.orphan = True
            roots.append(n)
            walk(n)
    for n in nodes:  # a cycle's back edge is no child link
        n.children = [c for c in n.children if c not in roots]
    return ordered, roots


def _critical_path(roots: list[SpanNode]) -> list[SpanNode]:
    """Mark the pieces of time each span holds up the trace (Jaeger's critical path).

    From the end of the root backwards: the child that finished last before the cursor is
    what the parent waited for; the time between its end and the cursor is the parent's own.
    """
    if not roots:
        return []
    path: list[SpanNode] = []

    def walk(span: SpanNode, until: int, depth: int) -> None:
        cursor = min(span.end_ns, until)
        if span not in path:
            path.append(span)
        if depth < CRITICAL_PATH_DEPTH_MAX:
            for child in sorted(span.children, key=lambda c: c.end_ns, reverse=True):
                if cursor <= span.start_ns:
                    break
                if child.start_ns >= cursor:
                    continue  # started after what the parent was still waiting for
                child_end = min(child.end_ns, cursor)
                if child_end < cursor:
                    span.critical.append((child_end, cursor))
                walk(child, child_end, depth + 1)
                cursor = max(child.start_ns, span.start_ns)
        if cursor > span.start_ns:
            span.critical.append((span.start_ns, cursor))

    root = roots[0]
    walk(root, root.end_ns, 0)
    for span in path:
        span.critical.sort()
    return sorted((s for s in path if s.critical), key=lambda s: s.critical[0])


@dataclass
class ComparedSpan:
    """One step of two traces' structure: the span in each (None where it is missing)."""

    path: tuple[tuple[str, str], ...]  # (service, operation) from the root down
    depth: int
    a: SpanNode | None
    b: SpanNode | None

    @property
    def change(self) -> str:
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        da, db_ = self.a.duration_ns, self.b.duration_ns
        if db_ - da >= COMPARE_MIN_NS and db_ > da * COMPARE_RATIO:
            return "slower"
        if da - db_ >= COMPARE_MIN_NS and da > db_ * COMPARE_RATIO:
            return "faster"
        return "same"

    @property
    def delta_ns(self) -> int | None:
        if self.a is None or self.b is None:
            return None
        return self.b.duration_ns - self.a.duration_ns


def compare_traces(a: TraceDetail, b: TraceDetail) -> list[ComparedSpan]:
    """Match two traces' spans by their service+operation path from the root.

    Siblings with the same service and operation pair up in start order; what is left over
    on either side is marked added (only in b) or removed (only in a).
    """
    rows: list[ComparedSpan] = []

    def key(n: SpanNode) -> tuple[str, str]:
        return (n.service, n.name)

    def match(xs: list[SpanNode], ys: list[SpanNode], path: tuple, depth: int) -> None:
        order: list[tuple[str, str]] = []
        groups: dict[tuple[str, str], tuple[list, list]] = {}
        for side, nodes in ((0, xs), (1, ys)):
            for n in sorted(nodes, key=lambda n: n.start_ns):
                if key(n) not in groups:
                    groups[key(n)] = ([], [])
                    order.append(key(n))
                groups[key(n)][side].append(n)
        for k in order:
            left, right = groups[k]
            for i in range(max(len(left), len(right))):
                x = left[i] if i < len(left) else None
                y = right[i] if i < len(right) else None
                here = (*path, k)
                rows.append(ComparedSpan(here, depth, x, y))
                if depth < CRITICAL_PATH_DEPTH_MAX:
                    match(x.children if x else [], y.children if y else [], here, depth + 1)

    match(a.roots, b.roots, (), 0)
    return rows
