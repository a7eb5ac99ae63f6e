"""Real `quarterdeck serve` replicas on one store, and what they wrote about leading."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from app.auth.accounts import create_token
from app.models import JobRun, LeaderRow
from app.replicas.locks import ADVISORY_KEY, libpq_conninfo
from app.store import Store
from tests.fixtures.processes import free_ports, wait_for

ROOT = Path(__file__).resolve().parents[2]
# Long enough that a loaded two-core machine still takes over inside it (docs/architecture.md
# "Replicas and the leader": detection <= 1 heartbeat, then one lease of 2 heartbeats).
INTERVAL_S = 6
HEARTBEAT_S = 1.0


@dataclass
class Replica:
    """One `quarterdeck serve` process."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    token: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, dict | str]:
        """GET with the API token; JSON bodies decoded."""
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read().decode()
                status = response.status
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            body, status, kind = exc.read().decode(), exc.code, ""
            exc.close()
        return status, json.loads(body) if "json" in kind else body

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Fleet:
    """Replicas on one store; start more, kill them, read what the store says."""

    store_url: str
    workdir: Path
    config_text: str
    token: str
    replicas: list[Replica] = field(default_factory=list)

    def start(self, name: str) -> Replica:
        """Start one more replica named `name` on its own port."""
        (port,) = free_ports(1)
        config = self.workdir / f"{name}.toml"
        config.write_text(
            f'[store]\nurl = "{self.store_url}"\n'
            f'[server]\nbind = "127.0.0.1:{port}"\ncookie_secure = false\n'
            f'[leader]\nreplica = "{name}"\nheartbeat_s = {HEARTBEAT_S}\n'
            f"[collect]\ninterval_s = {INTERVAL_S}\n" + self.config_text
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
        env.update(QUARTERDECK_CONFIG=str(config), QUARTERDECK_SECRET_KEY="replica-test-key")
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(name, port, process, log_path, self.token)
        self.replicas.append(replica)
        # A cold interpreter importing the whole app on a busy CI machine: give it time.
        wait_for(lambda: replica.get("/readyz")[0] == 200 or _died(replica), f"{name} answers", 60)
        assert replica.alive(), replica.log()
        return replica

    def by_name(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def leader_row(self) -> LeaderRow | None:
        with opened(self.store_url) as store, store.session() as db:
            return db.scalar(select(LeaderRow))

    def job_runs(self) -> list[JobRun]:
        with opened(self.store_url) as store, store.session() as db:
            return list(db.scalars(select(JobRun).order_by(JobRun.started_at)))

    def wait_for_leader(self, other_than: str | None = None, timeout: float = 60) -> str:
        """Wait until a replica (not `other_than`) leads and has run a job; return its name."""

        def led() -> str | None:
            row = self.leader_row()
            if row is None or row.replica == other_than:
                return None
            runs = [r for r in self.job_runs() if r.term == row.term]
            return row.replica if runs else None

        return wait_for(led, "a replica leads and runs its jobs", timeout)

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.alive():
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                replica.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()


@contextlib.contextmanager
def opened(url: str) -> Iterator[Store]:
    """A store for one look, its connections closed afterwards."""
    store = Store(url)
    try:
        yield store
    finally:
        store.dispose()


def _died(replica: Replica) -> bool:
    if not replica.alive():
        raise AssertionError(f"{replica.name} exited:\n{replica.log()}")
    return False


def advisory_holders(store_url: str) -> list[int]:
    """The backend pids holding Quarterdeck's leader advisory lock in this database."""
    high, low = (ADVISORY_KEY >> 32) & 0xFFFFFFFF, ADVISORY_KEY & 0xFFFFFFFF
    with psycopg.connect(libpq_conninfo(store_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s AND objid = %s",
            (high, low),
        ).fetchall()
    return [pid for (pid,) in rows]


def terminate_backend(store_url: str, pid: int) -> None:
    """Cut one session off, as a failover or a DBA's pg_terminate_backend would."""
    with psycopg.connect(libpq_conninfo(store_url), autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


@pytest.fixture
def make_fleet(tmp_path) -> Iterator[Callable[..., Fleet]]:
    """Return a factory of replica fleets on a migrated store with an API token."""
    made: list[Fleet] = []

    def factory(store_url: str, config_text: str = "") -> Fleet:
        with opened(store_url) as store, store.session() as db:
            token = create_token(db, "replica-test", "viewer")
        fleet = Fleet(store_url, tmp_path, config_text, token)
        made.append(fleet)
        return fleet

    yield factory
    for fleet in made:
        fleet.stop_all()


@pytest.fixture
def pg_store(postgres_server) -> Iterator[str]:
    """A fresh migrated PostgreSQL store."""
    url = postgres_server.create_database(template=postgres_server.migrated_template())
    yield url
    postgres_server.drop_database(url)
