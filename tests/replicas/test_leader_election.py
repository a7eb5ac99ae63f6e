"""Several `quarterdeck serve` replicas on one store: exactly one leads and runs the jobs."""

from __future__ import annotations

import http.client
import json
import time
from collections import defaultdict
from datetime import timedelta

from app.models import utcnow
from demo.consul import ConsulDouble
from tests.fixtures.processes import wait_for
from tests.replicas.conftest import INTERVAL_S, advisory_holders, terminate_backend

STATIC = '[[static_services]]\nname = "orders"\ninstances = ["10.0.0.5:8000"]\n'


def runs_of(fleet, replica: str, job_id: str | None = None):
    return [r for r in fleet.job_runs() if r.replica == replica and job_id in (None, r.job_id)]


def assert_no_job_ran_twice_at_once(runs) -> None:
    """Per job, every run ends before the next one starts, whichever replica ran it."""
    by_job = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    for job_id, job_runs in by_job.items():
        job_runs.sort(key=lambda r: r.started_at)
        for before, after in zip(job_runs, job_runs[1:], strict=False):
            ended = before.started_at + timedelta(seconds=before.duration_s)
            assert ended <= after.started_at, (job_id, before.replica, after.replica)


def test_three_replicas_elect_one_leader_and_a_killed_one_is_replaced_within_an_interval(
    make_fleet, pg_store
):
    fleet = make_fleet(pg_store, STATIC)
    for name in ("r1", "r2", "r3"):
        fleet.start(name)
    leader = fleet.wait_for_leader()
    wait_for(lambda: len(runs_of(fleet, leader, "collect:static")) >= 2, "two passes", 30)
    assert len(advisory_holders(pg_store)) == 1
    assert {run.replica for run in fleet.job_runs()} == {leader}
    for replica in fleet.replicas:  # every replica answers with the one stored leader
        status, body = replica.get("/api/v1/sources")
        assert status == 200 and body["leader"]["replica"] == leader, body
        assert body["replica"] == replica.name and body["leader"]["since"].endswith("Z")
    followers = [r for r in fleet.replicas if r.name != leader]
    assert all("starting jobs" not in r.log() for r in followers)
    gauges = {r.name: "\nquarterdeck_leader 1.0" in r.get("/metrics")[1] for r in fleet.replicas}
    assert gauges == {r.name: r.name == leader for r in fleet.replicas}

    killed = fleet.by_name(leader)
    killed_at = utcnow()
    killed.process.kill()
    killed.process.wait()
    successor = fleet.wait_for_leader(other_than=leader, timeout=30)
    row = fleet.leader_row()
    first_run = min(r.started_at for r in fleet.job_runs() if r.term == row.term)
    assert (first_run - killed_at).total_seconds() <= INTERVAL_S
    assert successor in {r.name for r in followers} and len(advisory_holders(pg_store)) == 1
    assert_no_job_ran_twice_at_once(fleet.job_runs())
    # The Sources page on the replica that still follows names the new leader.
    [still_following] = [r for r in followers if r.name != successor]
    status, page = still_following.get("/sources")
    assert status == 200 and f'data-leader-replica="{successor}"' in page
    assert f"this page from <code>{still_following.name}</code>, a follower" in page


def test_a_leader_cut_off_from_its_lock_stops_its_jobs_before_another_takes_over(
    make_fleet, pg_store
):
    fleet = make_fleet(pg_store, STATIC)
    fleet.start("r1")
    fleet.start("r2")
    leader = fleet.wait_for_leader()
    deposed = fleet.by_name(leader)
    [pid] = advisory_holders(pg_store)
    cut_at = utcnow()
    terminate_backend(pg_store, pid)  # only the lock's session: its pool keeps working
    successor = fleet.wait_for_leader(other_than=leader, timeout=30)
    wait_for(lambda: len(runs_of(fleet, successor, "collect:static")) >= 2, "two passes", 30)

    runs = fleet.job_runs()
    first_new = min(r.started_at for r in runs if r.replica == successor)
    assert (first_new - cut_at).total_seconds() <= INTERVAL_S
    old_runs = [r for r in runs if r.replica == leader]
    assert old_runs and max(r.started_at for r in old_runs) < first_new
    assert_no_job_ran_twice_at_once(runs)
    assert "stops leading" in deposed.log() and deposed.alive()
    # It still serves, as a follower, and shows who leads now.
    status, body = deposed.get("/api/v1/sources")
    assert status == 200 and body["leader"]["replica"] == successor
    assert len(advisory_holders(pg_store)) == 1


def read_changes(connection: http.client.HTTPResponse, deadline: float):
    """Yield the topics of each `change` event until the deadline."""
    data = None
    while time.monotonic() < deadline:
        line = connection.readline().decode()
        if not line:
            return
        line = line.rstrip("\n")
        if line.startswith("data:"):
            data = json.loads(line.split(":", 1)[1])
        elif line == "" and data is not None:
            yield set(data.get("topics", []))
            data = None


def test_a_live_stream_on_a_follower_hears_what_the_leader_collects(make_fleet, pg_store):
    with ConsulDouble() as double:
        fleet = make_fleet(pg_store, f'[consul]\nurl = "{double.url}"\n')
        fleet.start("r1")
        fleet.start("r2")
        leader = fleet.wait_for_leader()
        [follower] = [r for r in fleet.replicas if r.name != leader]
        connection = http.client.HTTPConnection("127.0.0.1", follower.port, timeout=20)
        connection.request("GET", "/events", headers={"Authorization": f"Bearer {fleet.token}"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.readline().startswith(b"retry:")
        try:
            double.register_node("node-9", "10.0.0.9")
            double.register_service("node-9", "billing-1", "billing", "10.0.0.9", 8080)
            deadline = time.monotonic() + 20
            heard = next(
                (t for t in read_changes(response, deadline) if "service:billing" in t), None
            )
        finally:
            response.close()
            connection.close()
        assert heard is not None and "services" in heard
        # The follower collected nothing itself; what it shows came through the store.
        assert all(run.replica == leader for run in fleet.job_runs())
        status, body = follower.get("/api/v1/services")
        assert "billing" in [s["name"] for s in body["services"]]


def test_a_second_serve_on_the_same_sqlite_file_does_not_collect_until_the_first_stops(
    make_fleet, sqlite_url
):
    fleet = make_fleet(sqlite_url, STATIC)
    first = fleet.start("r1")
    assert fleet.wait_for_leader() == "r1"
    second = fleet.start("r2")
    passes = len(runs_of(fleet, "r1", "collect:static"))
    wait_for(lambda: len(runs_of(fleet, "r1", "collect:static")) >= passes + 2, "passes", 30)
    assert runs_of(fleet, "r2") == []
    status, body = second.get("/api/v1/sources")
    assert status == 200 and body["leader"]["replica"] == "r1" and body["replica"] == "r2"

    killed_at = utcnow()
    first.process.kill()
    first.process.wait()
    assert fleet.wait_for_leader(other_than="r1", timeout=30) == "r2"
    first_run = min(r.started_at for r in runs_of(fleet, "r2"))
    assert (first_run - killed_at).total_seconds() <= INTERVAL_S
