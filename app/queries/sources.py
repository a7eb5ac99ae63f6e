"""The status of every configured source, whether its data is stale, and what is missing."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.collection.registry import ConfiguredSource
from app.collection.unrecorded import UnrecordedRuns
from app.config import Config
from app.models import CollectorRun, SourceStatus


@dataclass(frozen=True)
class SourceView:
    """One source as pages and the API show it."""

    name: str
    kind: str
    status: str  # ok | stale | error | disabled
    last_success_at: datetime | None
    last_run_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    error_kind: str
    age_s: float | None
    stale_after_s: float
    # Set while the store refuses to record this source's passes (error_kind "store").
    store_error: str = ""
    unrecorded_runs: int = 0
    # A blocking-query source (Consul) is watched, not polled: each pass waits for an answer.
    blocking: bool = False
    # When the source last answered: the end of its last successful pass.
    last_answer_at: datetime | None = None
    # What the source's collector warned of on its last successful pass (see SourceWarning).
    warnings: tuple[dict, ...] = ()

    @property
    def stale(self) -> bool:
        """Whether data from this source may be out of date."""
        return self.status in ("stale", "error")

    @property
    def stale_since(self) -> datetime | None:
        """When the data stopped being fresh: the last success (or the first failure)."""
        return self.last_success_at or self.last_error_at

    def to_json(self) -> dict:
        """Render as DESIGN §5 `sources[]`."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "last_success_at": iso(self.last_success_at),
            "last_run_at": iso(self.last_run_at),
            "last_error": self.last_error or None,
            "last_error_at": iso(self.last_error_at),
            "error_kind": self.error_kind or None,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "stale_after_s": round(self.stale_after_s, 1),
            "blocking": self.blocking,
            "last_answer_at": iso(self.last_answer_at),
            "store_error": self.store_error or None,
            "unrecorded_runs": self.unrecorded_runs,
            "warnings": [dict(w) for w in self.warnings],
        }


def iso(value: datetime | None) -> str | None:
    """Format a UTC time as RFC 3339 with a Z, or None."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def source_views(
    db: Session,
    sources: list[ConfiguredSource],
    now: datetime,
    unrecorded: UnrecordedRuns | None = None,
) -> list[SourceView]:
    """Describe each configured source from its last recorded runs, or the ones not recorded.

    A pass the store refused to record is newer than anything stored: it is what the source's
    status is now, not the old success the store still holds.
    """
    rows = {row.name: row for row in db.scalars(select(SourceStatus))}
    views = [_view(source, rows.get(source.name), now) for source in sources]
    if unrecorded is not None:
        views = [_with_unrecorded(view, unrecorded) for view in views]
    return [
        _watched(db, view, unrecorded) if getattr(source.collector, "blocking", False) else view
        for source, view in zip(sources, views, strict=True)
    ]


def last_counts(db: Session, names: list[str]) -> dict[str, dict[str, int]]:
    """Return what each source's last successful pass counted (services, alerts firing, ...)."""
    counts = {}
    for name in names:  # one indexed read per source, newest first
        row = db.execute(
            select(CollectorRun.counts)
            .where(CollectorRun.source == name, CollectorRun.ok.is_(True))
            .order_by(CollectorRun.started_at.desc())
            .limit(1)
        ).first()
        counts[name] = dict(row.counts or {}) if row else {}
    return counts


def _watched(db: Session, view: SourceView, unrecorded: UnrecordedRuns | None) -> SourceView:
    """Mark a blocking-query source, with when it last answered (its last pass's end)."""
    run = db.execute(
        select(CollectorRun.started_at, CollectorRun.duration_s)
        .where(CollectorRun.source == view.name, CollectorRun.ok.is_(True))
        .order_by(CollectorRun.started_at.desc())
        .limit(1)
    ).first()
    answers = [run] if run else []
    # A pass the store refused still heard the source answer.
    if unrecorded is not None:
        answers += [held.record for held in unrecorded.held(view.name) if held.collected]
    answered_at = max(
        (a.started_at + timedelta(seconds=a.duration_s) for a in answers), default=None
    )
    return replace(view, blocking=True, last_answer_at=answered_at)


def _with_unrecorded(view: SourceView, unrecorded: UnrecordedRuns) -> SourceView:
    held = unrecorded.held(view.name)
    if not held:
        return view
    latest = held[-1]
    store_error = f"the store could not be written: {latest.store_error}"
    if latest.collected:
        what = "what the source returned is not stored"
    else:
        what = f"the pass failed too: {latest.record.error}"
    return replace(
        view,
        status="error",
        last_run_at=latest.record.started_at,
        last_error=f"{store_error}; {what}",
        last_error_at=latest.record.started_at,
        error_kind="store",
        store_error=latest.store_error,
        unrecorded_runs=len(held) + unrecorded.dropped(view.name),
    )


def _view(source: ConfiguredSource, row: SourceStatus | None, now: datetime) -> SourceView:
    if source.collector is None:
        return SourceView(
            source.name,
            source.kind,
            "disabled",
            None,
            None,
            f"this version of Quarterdeck has no {source.kind} collector yet",
            None,
            "",
            None,
            source.stale_after_s,
        )
    if row is None:
        return SourceView(
            source.name,
            source.kind,
            "stale",
            None,
            None,
            "not collected yet",
            None,
            "",
            None,
            source.stale_after_s,
        )
    age = (now - row.last_success_at).total_seconds() if row.last_success_at else None
    if not row.ok:
        status = "error"
    elif age is None or age > source.stale_after_s:
        status = "stale"
    else:
        status = "ok"
    return SourceView(
        name=source.name,
        kind=source.kind,
        status=status,
        last_success_at=row.last_success_at,
        last_run_at=row.last_run_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        error_kind="" if row.ok else row.error_kind,
        age_s=age,
        stale_after_s=source.stale_after_s,
        warnings=tuple(w for w in (row.warnings or []) if isinstance(w, dict)),
    )


# ----- what is missing ----------------------------------------------------------------------

# Debian installs haproxy and nginx in /usr/sbin, which is not on a normal user's PATH.
EXTRA_BIN_DIRS = ("/usr/sbin", "/sbin")


@dataclass(frozen=True)
class SourceHint:
    """A source this configuration does not read (or cannot act on), and how to add it."""

    kind: str
    binary: str
    package: str
    gives: str
    installed: bool
    # "demo-not-installed", "demo-not-configured" or "reload-missing".
    reason: str
    config_lines: str = ""
    detail: str = ""

    @property
    def install(self) -> str:
        """Return the command that installs the binary (Debian and Ubuntu)."""
        return f"sudo apt-get install {self.package}"


@dataclass(frozen=True)
class _Kind:
    binary: str
    package: str
    gives: str
    config_lines: str


KINDS = {
    "prometheus": _Kind(
        "prometheus",
        "prometheus",
        "request rate, error ratio and latency per service, firing alerts, the push gauge",
        '[prometheus]\nurl = "http://127.0.0.1:9090"',
    ),
    "haproxy": _Kind(
        "haproxy",
        "haproxy",
        "what HAProxy says of every server: state, check, weight, sessions",
        '[[haproxy]]\nname = "edge"\nstats_url = "http://127.0.0.1:8404/stats;csv"\n'
        'runtime = "tcp://127.0.0.1:9999"',
    ),
    "nginx": _Kind(
        "nginx",
        "nginx-light",
        "nginx's connections and its upstream servers (weight, down, backup, max_fails)",
        '[[nginx]]\nname = "push"\nstatus_url = "http://127.0.0.1:8081/nginx_status"\n'
        'upstream_conf = "/etc/nginx/conf.d/push-upstreams.conf"',
    ),
}


def default_search_path() -> str:
    """Return where binaries are looked for: PATH, then /usr/sbin and /sbin."""
    return os.pathsep.join([os.environ.get("PATH", os.defpath), *EXTRA_BIN_DIRS])


def source_hints(config: Config, search_path: str | None = None) -> list[SourceHint]:
    """Say what is missing: in the demo, each tool it could not run; anywhere, a reload command
    for nginx that is not on this machine (draining through that nginx would fail)."""
    path = default_search_path() if search_path is None else search_path
    hints: list[SourceHint] = []
    if config.demo:
        configured = {
            "prometheus": config.prometheus is not None,
            "haproxy": bool(config.haproxy),
            "nginx": bool(config.nginx),
        }
        for kind, spec in KINDS.items():
            if configured[kind]:
                continue
            installed = shutil.which(spec.binary, path=path) is not None
            hints.append(
                SourceHint(
                    kind,
                    spec.binary,
                    spec.package,
                    spec.gives,
                    installed,
                    "demo-not-configured" if installed else "demo-not-installed",
                    spec.config_lines,
                )
            )
    for nginx in config.nginx:
        command = nginx.reload[0] if nginx.reload else ""
        if command and shutil.which(command, path=path) is None:
            spec = KINDS["nginx"]
            hints.append(
                SourceHint(
                    "nginx",
                    command,
                    spec.package,
                    spec.gives,
                    False,
                    "reload-missing",
                    detail=f"[[nginx]] {nginx.name}: reload runs {' '.join(nginx.reload)}",
                )
            )
    return hints
