"""The redis_server fixture runs a real redis-server, emptied before each test."""

import pytest
import redis


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_starts_with_an_empty_redis(redis_url, run):
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("smoke", f"run {run}")
        assert client.get("smoke") == f"run {run}".encode()


def test_redis_url_names_database_zero_on_loopback(redis_server, redis_url):
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(redis_url) as client:
        assert client.info("server")["tcp_port"] == redis_server.port
