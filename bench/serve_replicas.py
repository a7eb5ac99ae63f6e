"""Start `quarterdeck serve` replicas on one PostgreSQL store (used by the replica benches).

Not a benchmark itself: bench/leader_takeover.py and bench/replicas_api.py import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.auth.accounts import create_token  # noqa: E402
from app.models import JobRun, LeaderRow  # noqa: E402
from app.store import Store, migrate  # noqa: E402


@contextlib.contextmanager
def postgres_database(admin_url: str | None) -> Iterator[str]:
    """Yield the URL of a fresh, migrated database: on `admin_url`'s server, or a throwaway one."""
    from sqlalchemy.engine import make_url

    from tests.fixtures.postgres import PostgresServer, running_postgres
    from tests.fixtures.processes import short_temp_dir, unprivileged_user

    if admin_url:
        server = PostgresServer(make_url(admin_url))
        url = server.create_database()
        migrate.upgrade(url)
        try:
            yield url
        finally:
            server.drop_created_databases()
        return
    workdir = short_temp_dir("qd-bench-pg-", reachable_by=unprivileged_user())
    try:
        with running_postgres(workdir) as base:
            server = PostgresServer(base)
            url = server.create_database()
            migrate.upgrade(url)
            yield url
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ReplicaProcess:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Replicas:
    """Replicas of one configuration on one store."""

    store_url: str
    config_text: str
    heartbeat_s: float = 1.0
    interval_s: int = 10
    threads: int = 32
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="qd-replicas-")))
    running: list[ReplicaProcess] = field(default_factory=list)
    token: str = ""

    def __post_init__(self) -> None:
        store = Store(self.store_url)
        try:
            with store.session() as db:
                self.token = create_token(db, f"bench-{os.getpid()}", "viewer")
        finally:
            store.dispose()

    def start(self, name: str) -> ReplicaProcess:
        port = free_port()
        config = self.workdir / f"{name}.toml"
        config.write_text(
            f'[store]\nurl = "{self.store_url}"\n'
            f'[server]\nbind = "127.0.0.1:{port}"\nthreads = {self.threads}\n'
            f'[leader]\nreplica = "{name}"\nheartbeat_s = {self.heartbeat_s}\n'
            f"[collect]\ninterval_s = {self.interval_s}\n" + self.config_text
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
        env.update(QUARTERDECK_CONFIG=str(config), QUARTERDECK_SECRET_KEY="bench-key")
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        replica = ReplicaProcess(name, port, process, log_path)
        self.running.append(replica)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{replica.base}/readyz", timeout=2).status_code == 200:
                    return replica
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer in time")

    def by_name(self, name: str) -> ReplicaProcess:
        return next(r for r in self.running if r.name == name)

    def forget(self, replica: ReplicaProcess) -> None:
        self.running.remove(replica)

    def leader(self) -> LeaderRow | None:
        store = Store(self.store_url)
        try:
            with store.session() as db:
                return db.scalar(select(LeaderRow))
        finally:
            store.dispose()

    def job_runs(self) -> list[JobRun]:
        store = Store(self.store_url)
        try:
            with store.session() as db:
                return list(db.scalars(select(JobRun).order_by(JobRun.started_at)))
        finally:
            store.dispose()

    def wait_for_leader(self, other_than: str | None = None, timeout: float = 60) -> LeaderRow:
        """Wait until a replica (not `other_than`) leads and has started a job run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.leader()
            led = row is not None and row.replica != other_than
            if led and any(run.term == row.term for run in self.job_runs()):
                return row
            time.sleep(0.05)
        raise RuntimeError("no replica took over in time")

    def stop_all(self) -> None:
        for replica in self.running:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.running:
            try:
                replica.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()
        self.running.clear()
