"""On SQLite, collectors writing while the API serves never surface 'database is locked'."""

from __future__ import annotations

import threading
import time

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import StaticServiceConfig
from app.factory import create_app


def test_api_reads_and_collector_writes_interleave_without_lock_errors(make_qd, make_token):
    static = tuple(
        StaticServiceConfig(name=f"svc-{i}", instances=(f"10.0.0.{i}:80",)) for i in range(30)
    )
    qd = make_qd(static_services=static)
    collector = configured_sources(qd.config, qd.clock)[0].collector
    tokens = [make_token(f"reader-{i}", "viewer") for i in range(3)]
    app = create_app(qd=qd)
    stop = threading.Event()
    statuses: list[int] = []
    failures: list[str] = []

    def read(token: str) -> None:
        client = app.test_client()
        while not stop.is_set():
            response = client.get("/api/v1/services", headers={"Authorization": f"Bearer {token}"})
            statuses.append(response.status_code)

    def write() -> None:
        while not stop.is_set():
            result = run_pass(qd, collector)
            if not result.ok:
                failures.append(result.error)

    threads = [threading.Thread(target=read, args=(t,)) for t in tokens]
    threads += [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join()
    assert statuses and set(statuses) == {200}
    assert failures == []
