"""Every scheduled job, as one declarative list; the scheduler reconciles to it by stable id.

A domain adds its jobs by writing a provider — a function from the running context to the
`Job`s it wants — and listing it in `PROVIDERS`. The scheduler adds what is new, replaces what
changed and removes what is no longer declared, so a job's id is its identity across restarts
and configuration reloads. Collectors that hold a blocking query are watch loops, not jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from app.actions import expiry
from app.collection import probes, releases, span_red, span_retention
from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.context import Quarterdeck
from app.reports.running import deliver_due, run_daily
from app.store.probes import forget_unconfigured_probes
from app.store.retention import prune
from app.store.span_red import prune_span_red

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One scheduled job: what runs, how often, and on which executor."""

    id: str  # stable across restarts: "collect:consul", "probe:checkout", "retention"
    name: str  # as people read it
    func: Callable[..., object]
    every_s: float
    args: tuple = field(default=(), compare=False)
    # "default" for short jobs; "probes" for jobs that may wait out a network timeout.
    executor: str = "default"
    # Run at start-up (catch up on what happened while no leader ran it) or one interval in.
    run_at_start: bool = True
    # "HH:MM" (UTC): run once a day at that time instead of every `every_s` seconds.
    daily_at: str | None = None


JobProvider = Callable[[Quarterdeck], Sequence[Job]]


def collector_jobs(qd: Quarterdeck) -> list[Job]:
    """One job per polled source (blocking sources are watch loops, see the scheduler)."""
    every_s = qd.config.collect.interval_s
    return [
        Job(
            f"collect:{s.collector.name}",
            f"collect {s.collector.name}",
            run_pass,
            every_s,
            (qd, s.collector),
        )
        for s in configured_sources(qd.config, qd.clock)
        if s.collector is not None and not getattr(s.collector, "blocking", False)
    ]


def retention_jobs(qd: Quarterdeck) -> list[Job]:
    """Retention of samples and transitions, of spans, and the span RED roll-up."""
    return [
        Job("retention", "retention", prune_store, 3600.0, (qd,)),
        Job(
            span_retention.JOB_NAME,
            "span retention",
            span_retention.enforce_span_retention,
            float(span_retention.INTERVAL_S),
            (qd,),
        ),
        Job(
            span_red.JOB_NAME,
            "span RED",
            span_red.roll_up_span_red,
            float(span_red.INTERVAL_S),
            (qd,),
        ),
    ]


def probe_jobs(qd: Quarterdeck) -> list[Job]:
    """Each `[[probes]]` entry on its own interval, on the probe executor."""
    return [
        Job(
            probes.job_id(p),
            f"probe {p.name}",
            probes.run_and_record,
            float(p.interval_s),
            (qd, p),
            executor="probes",
        )
        for p in qd.config.probes
    ]


def rule_jobs(qd: Quarterdeck) -> list[Job]:
    """The `[[rules]]` evaluation cycle, when any rule is configured."""
    from app.rules.evaluation import JOB_ID, evaluate_rules

    if not qd.config.rules:
        return []
    every_s = float(qd.config.automation.interval_s)
    return [Job(JOB_ID, "rules", evaluate_rules, every_s, (qd,), run_at_start=False)]


def report_jobs(qd: Quarterdeck) -> list[Job]:
    """Each daily `[[reports]]` entry at its time, and the delivery retries of every report."""
    jobs = [
        Job(
            f"report:{r.name}",
            f"report {r.name}",
            run_daily,
            86400.0,
            (qd, r),
            executor="probes",  # it may wait out an SMTP or webhook timeout
            daily_at=r.daily_at,
        )
        for r in qd.config.reports
        if r.daily_at
    ]
    if qd.config.reports:
        jobs.append(
            Job(
                "report-deliveries",
                "report deliveries",
                deliver_due,
                float(DELIVERY_CHECK_S),
                (qd,),
                executor="probes",
            )
        )
    return jobs


# How often due report deliveries (retries, and reports made on the Reports page) are sent.
DELIVERY_CHECK_S = 15


def action_jobs(qd: Quarterdeck) -> list[Job]:
    """The expiry of degrade switches past their `until`, when Consul is configured."""
    if qd.config.consul is None:
        return []
    return [
        Job(expiry.JOB_ID, "degrade expiry", expiry.expire_degrade_switches,
            expiry.INTERVAL_S, (qd,)),
    ]  # fmt: skip


def release_jobs(qd: Quarterdeck) -> list[Job]:
    """Release tracking, on the collection interval (it reads the store and one KV prefix)."""
    every_s = float(qd.config.collect.interval_s)
    return [Job(releases.JOB_NAME, "releases", releases.track_releases, every_s, (qd,))]


# Every job Quarterdeck runs comes from one of these, in this order.
PROVIDERS: list[JobProvider] = [
    collector_jobs,
    retention_jobs,
    probe_jobs,
    rule_jobs,
    report_jobs,
    action_jobs,
    release_jobs,
]


def declared_jobs(qd: Quarterdeck) -> list[Job]:
    """The whole list; two jobs with one id is a programming error and fails loudly."""
    jobs: list[Job] = []
    seen: set[str] = set()
    for provider in PROVIDERS:
        for job in provider(qd):
            if job.id in seen:
                raise ValueError(f"two scheduled jobs share the id {job.id!r}")
            seen.add(job.id)
            jobs.append(job)
    return jobs


def prune_store(qd: Quarterdeck) -> dict[str, int]:
    """Apply `[retention]` to samples, transitions, span RED minutes and the audit trail."""
    with qd.store.session(write=True) as db:
        removed = prune(db, qd.config.retention, qd.clock())
        removed["span_red_minutes"] = prune_span_red(db, qd.config.retention.spans_h, qd.clock())
    if any(removed.values()):
        log.info("retention removed %s", removed)
    return removed


def forget_removed_probes(qd: Quarterdeck) -> None:
    """Drop the stored state of probes no longer configured (start-up housekeeping)."""
    try:
        with qd.store.session(write=True) as db:
            forget_unconfigured_probes(db, [p.name for p in qd.config.probes])
    except SQLAlchemyError as exc:
        # A store that takes no writes is /readyz's news; collection still starts.
        log.warning("could not drop the state of removed probes: %s", exc)
