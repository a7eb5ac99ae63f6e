"""The scheduler holds exactly the declared jobs, reconciled by their stable ids."""

from __future__ import annotations

import pytest

from app.collection import jobs as jobs_module
from app.collection.jobs import Job, declared_jobs
from app.collection.scheduler import CollectionService
from app.config import ProbeConfig, StaticServiceConfig


def noop(*_args) -> None:
    """A job that does nothing (the test is about the schedule, not the work)."""


def test_the_declared_list_names_every_job_once(make_qd):
    qd = make_qd(
        static_services=(StaticServiceConfig(name="web", instances=("127.0.0.1:1",)),),
        probes=(ProbeConfig(name="checkout", service="web", url="http://127.0.0.1:1/"),),
    )
    ids = [job.id for job in declared_jobs(qd)]
    assert ids == [
        "collect:static",
        "retention",
        "span-retention",
        "span-red",
        "probe:checkout",
        "releases",
    ]


def test_reconcile_adds_replaces_and_removes_by_id(make_qd):
    qd = make_qd()
    service = CollectionService(qd)
    service.start()
    try:
        before = service.job_ids()
        assert "retention" in before and "collect:static" not in before
        service.reconcile([*declared_jobs(qd), Job("extra", "extra", noop, 60.0)])
        assert service.job_ids() == sorted([*before, "extra"])
        # A changed interval replaces the job under the same id; one not declared goes.
        service.reconcile([Job("extra", "extra", noop, 120.0)])
        assert service.job_ids() == ["extra"]
        assert service.scheduler.get_job("extra").trigger.interval.total_seconds() == 120
    finally:
        service.stop()


def test_two_jobs_with_one_id_fail_loudly(make_qd, monkeypatch):
    qd = make_qd()

    def twice(_qd):
        return [Job("same", "a", noop, 1.0), Job("same", "b", noop, 1.0)]

    monkeypatch.setattr(jobs_module, "PROVIDERS", [twice])
    with pytest.raises(ValueError, match="share the id 'same'"):
        declared_jobs(qd)


def test_stop_returns_after_the_jobs_running_now_have_finished(make_qd):
    # A job left running past stop() would write to a store its owner then disposes.
    import threading

    started, finished = threading.Event(), threading.Event()

    def slow():
        started.set()
        threading.Event().wait(1.0)
        finished.set()

    qd = make_qd()
    service = CollectionService(qd)
    service.start()
    try:
        service.reconcile([Job("slow", "slow", slow, 3600.0)])
        assert started.wait(10)
    finally:
        service.stop()
    assert finished.is_set()
