"""Every declared job's runs are recorded by the scheduler and shown with the declared list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from app.auth.accounts import create_user
from app.collection.jobs import Job, declared_jobs
from app.collection.runner import PassResult
from app.collection.scheduler import run_job
from app.config import StaticServiceConfig
from app.context import Quarterdeck
from app.factory import create_app
from app.models import JobRun
from app.replicas.leadership import Leadership
from app.replicas.locks import ProcessLock
from app.store.leadership import claim_leadership, record_job_run
from tests.conftest import PASSWORD, sign_in

STATIC = (StaticServiceConfig(name="orders", instances=("10.0.0.5:8000",)),)


def boom() -> None:
    raise RuntimeError("the disk is full\nsecond line")


def failed_pass() -> PassResult:
    return PassResult("edge", False, 0.01, error="connection refused")


def runs(qd: Quarterdeck, job_id: str) -> list[JobRun]:
    with qd.store.session() as db:
        return list(db.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.id)))


def test_a_job_that_raises_is_recorded_as_an_error_with_its_first_line(make_qd, store_url):
    qd = make_qd(store_url)
    run_job(qd, Job("boom", "boom", boom, 60.0))
    [run] = runs(qd, "boom")
    assert (run.ok, run.error) == (False, "RuntimeError: the disk is full")
    assert run.duration_s >= 0 and run.started_at is not None


def test_a_failed_pass_is_an_error_run_and_a_good_one_keeps_its_counts(make_qd, store_url):
    qd = make_qd(store_url, static_services=STATIC)
    run_job(qd, Job("collect:edge", "collect edge", failed_pass, 10.0))
    [collect] = [job for job in declared_jobs(qd) if job.id == "collect:static"]
    run_job(qd, collect)
    [failed] = runs(qd, "collect:edge")
    [good] = runs(qd, "collect:static")
    assert (failed.ok, failed.error) == (False, "connection refused")
    assert good.ok and good.error == "" and good.counts.get("services") == 1, good.counts


def test_each_job_keeps_only_its_newest_runs(make_qd, store_url):
    qd = make_qd(store_url)
    for i in range(5):
        with qd.store.session(write=True) as db:
            run = JobRun(job_id="a", started_at=qd.clock(), duration_s=i, ok=True, counts={})
            record_job_run(db, run, keep=3)
    with qd.store.session(write=True) as db:
        record_job_run(db, JobRun(job_id="b", started_at=qd.clock(), duration_s=9, ok=True), keep=3)
    assert [r.duration_s for r in runs(qd, "a")] == [2, 3, 4]
    assert [r.duration_s for r in runs(qd, "b")] == [9]


def test_a_replica_that_does_not_lead_starts_no_run(make_qd, store_url):
    qd = make_qd(store_url)
    follower = Leadership(
        qd, ProcessLock(), replica="r9", heartbeat_s=1.0, on_elected=print, on_lost=print
    )
    assert run_job(qd, Job("boom", "boom", boom, 60.0), follower) is None
    assert runs(qd, "boom") == []


def test_a_leader_whose_term_another_replaced_starts_no_run(make_qd, store_url):
    qd = make_qd(store_url)
    elected: list[Leadership] = []
    leader = Leadership(
        qd, ProcessLock(), replica="r1", heartbeat_s=1.0, on_elected=elected.append, on_lost=print
    )
    leader.step()  # takes the lock and records term 1
    assert leader.confirmed() and leader.may_run()
    ran = run_job(qd, Job("boom", "boom", boom, 60.0), leader)
    assert ran is not None and (ran.replica, ran.term) == ("r1", 1)
    with qd.store.session(write=True) as db:
        claim_leadership(db, "r2", qd.clock())  # someone else holds term 2 now
    assert leader.confirmed() and not leader.may_run()
    assert run_job(qd, Job("boom", "boom", boom, 60.0), leader) is None
    assert len(runs(qd, "boom")) == 1


def test_the_sources_page_and_the_api_list_every_declared_job(make_qd, store_url):
    qd = make_qd(store_url, static_services=STATIC)
    [collect] = [job for job in declared_jobs(qd) if job.id == "collect:static"]
    run_job(qd, collect)
    run_job(qd, Job("ignored", "not declared", boom, 1.0))
    with qd.store.session() as db:
        create_user(db, "viewer", "viewer", PASSWORD)
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "viewer").status_code == 302

    page = client.get("/sources").get_data(as_text=True)
    for job in declared_jobs(qd):
        assert f'data-job="{job.id}"' in page
    assert 'data-job="ignored"' not in page
    assert "No replica has led yet" in page

    body = client.get("/api/v1/jobs").json
    by_id = {job["id"]: job for job in body["jobs"]}
    assert list(by_id) == [job.id for job in declared_jobs(qd)]
    static = by_id["collect:static"]
    assert static["status"] == "ok" and static["every_s"] == 10 and static["counts"]["services"]
    assert static["next_run_at"] > static["last_run_at"]
    assert by_id["retention"]["status"] == "stale" and by_id["retention"]["last_run_at"] is None
    assert client.get("/api/v1/sources").json["leader"] is None


def test_quarterdeck_jobs_lists_the_declared_jobs_and_the_leader(tmp_path, sqlite_url, make_qd):
    qd = make_qd(sqlite_url, static_services=STATIC)
    with qd.store.session(write=True) as db:
        claim_leadership(db, "web-1:4242", qd.clock())
    [collect] = [job for job in declared_jobs(qd) if job.id == "collect:static"]
    run_job(qd, Job("collect:static", "collect static", boom, 10.0))
    config = tmp_path / "quarterdeck.toml"
    config.write_text(
        f'[store]\nurl = "{sqlite_url}"\n'
        '[[static_services]]\nname = "orders"\ninstances = ["10.0.0.5:8000"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTERDECK_")}
    env["QUARTERDECK_CONFIG"] = str(config)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "jobs"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("leader: web-1:4242 since ") and "(term 1)" in lines[0]
    assert any(line.startswith(collect.id) and " error " in line for line in lines)
    assert any("error: RuntimeError: the disk is full" in line for line in lines)
    assert any(line.startswith("span-retention") and "never" in line for line in lines)
