"""A quiet datacenter costs three long polls per wait (its CPU is measured in bench/)."""

from __future__ import annotations

import time

from app.collection.runner import run_pass

WATCHED = {"/v1/catalog/services", "/v1/catalog/nodes", "/v1/health/state/any"}


def test_with_nothing_changing_a_pass_returns_nothing_after_the_wait_using_only_the_long_polls(
    fleet, counting_proxy, make_consul_qd, make_collector
):
    qd = make_consul_qd(url=counting_proxy.url, wait_s=1)
    collector = make_collector(qd)
    assert run_pass(qd, collector).ok
    full_pass = len(counting_proxy.requests)

    started = time.monotonic()
    idle = [collector.collect() for _ in range(3)]
    elapsed = time.monotonic() - started

    assert idle == [[], [], []]
    # Each pass waits for every long poll to come back unchanged: at least one wait (1 s) each.
    assert elapsed > 2.8
    requests = counting_proxy.requests[full_pass:]
    assert {path for path, _ in requests} == WATCHED
    for path, params in requests:
        assert params["wait"] == ["1s"] and int(params["index"][0]) > 1, (path, params)
    for path in WATCHED:
        # One per wait, and the one just sent when the last pass returned.
        assert len([p for p, _ in requests if p == path]) <= 4, path
