"""Redis dies mid-request: fail closed by default, open by configuration; never crash or hang."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from fleet.idempotency import IdempotencyGuard, IdempotencyUnavailable
from tests.fixtures.processes import LOOPBACK, ServerProcess, free_port, require_binary
from tests.fixtures.servers import _redis_answers_ping


class PrivateRedis:
    """A redis-server of this test alone, so it can be killed."""

    def __init__(self, workdir):
        self.port = free_port()
        argv = [
            require_binary("redis-server", "redis-server"),
            "--port",
            self.port,
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        self.server = ServerProcess("redis-server", argv, log_path=workdir / "redis.log")
        self.server.wait_ready(lambda: _redis_answers_ping(self.port))

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK, port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
        )

    def kill(self) -> None:
        self.server.process.kill()
        self.server.process.wait()


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    server.server.stop()


def test_redis_killed_mid_request_returns_the_work_and_then_fails_closed(private_redis):
    client = private_redis.client()
    guard = IdempotencyGuard(client, "orders", ttl_ms=300, stream="t:events")
    killed = threading.Event()

    def work():
        private_redis.kill()
        killed.set()
        time.sleep(0.5)  # the watchdog tries to renew against a dead server meanwhile
        return "placed"

    started = time.monotonic()
    # The work ran: its result is returned, not stored; the key would expire by its TTL.
    assert guard.run("order-1", work) == "placed"
    with pytest.raises(IdempotencyUnavailable, match="order-2"):
        guard.run("order-2", lambda: "must not run")
    elapsed = time.monotonic() - started
    guard.close()
    client.close()
    assert killed.is_set()
    assert elapsed < 20  # bounded by the client's timeouts and retries, not a hang


def test_fail_open_runs_the_work_unguarded_when_redis_is_down(private_redis):
    client = private_redis.client()
    guard = IdempotencyGuard(client, "orders", stream="t:events", fail_open=True)
    private_redis.kill()
    ran = []
    assert guard.run("order-3", lambda: ran.append(1) or "placed") == "placed"
    assert ran == [1]
    guard.close()
    client.close()


def test_waiting_for_a_replica_that_is_not_there_fails_closed(private_redis):
    client = private_redis.client()
    guard = IdempotencyGuard(
        client, "orders", stream="t:events", wait_replicas=1, wait_timeout_ms=50
    )
    with pytest.raises(IdempotencyUnavailable, match="0 of 1 replicas"):
        guard.run("order-4", lambda: "must not run")
    assert client.exists(guard.redis_key("order-4")) == 0
    guard.close()
    client.close()
