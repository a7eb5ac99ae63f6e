"""A service watching its degrade key: writes seen at once, deletes and `until` restore it,
bad values never degrade it, and the watch survives Consul restarting from scratch.

The fixtures live here rather than in tests/fleet/conftest.py, which is the idempotency guard's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import consul
import pytest

from demo.consul import ConsulDouble
from fleet.degrade import (
    NOT_DEGRADED,
    DegradeState,
    DegradeSwitch,
    InvalidSwitch,
    parse_switch,
)


@pytest.fixture(autouse=True)
def _no_consul_environment(monkeypatch) -> None:
    """py-consul lets CONSUL_HTTP_TOKEN override the token argument; keep it out."""
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    """A running Consul double with an empty KV store."""
    with ConsulDouble() as running:
        yield running


def eventually(condition: Callable[[], Any], timeout: float = 5.0, every: float = 0.01) -> Any:
    """Poll until condition() is truthy and return it; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(every)


class Recorder:
    """An on_change callback that keeps every state it was handed."""

    def __init__(self) -> None:
        self.states: list[DegradeState] = []

    def __call__(self, state: DegradeState) -> None:
        self.states.append(state)


@pytest.fixture(params=["http", "py-consul"])
def make_switch(request) -> Iterator[Callable[..., DegradeSwitch]]:
    """Return a factory of switches on a double, over plain HTTP or through a py-consul client.

    Every switch is stopped at the end, and must stop.
    """
    made: list[DegradeSwitch] = []
    clients: list[consul.Consul] = []
    targets: list[ConsulDouble] = []

    def factory(target: ConsulDouble, service: str, **options: Any) -> DegradeSwitch:
        targets.append(target)
        if request.param == "http":
            where: Any = target.url
        else:
            where = consul.Consul(host=target.host, port=target.port)
            clients.append(where)
        switch = DegradeSwitch(where, service, **options)
        made.append(switch)
        return switch

    factory.transport = request.param  # type: ignore[attr-defined]
    yield factory
    for switch in made:
        switch.stop(timeout=0)
    # A py-consul read cannot be cut from outside; stopping the double ends it.
    for target in targets:
        target.stop()
    for switch in made:
        assert switch.stop(timeout=10), f"{switch.key}'s watch did not stop"
    for client in clients:
        client.http.session.close()


KEY = "quarterdeck/degrade/orders"


def switch_json(**fields) -> str:
    record = {
        "level": "partial",
        "features_off": ["recommendations"],
        "reason": "inventory is slow",
        "by": "alice",
        **fields,
    }
    return json.dumps(record)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_write_wakes_the_blocking_query_long_before_its_wait_ends(double, make_switch):
    switch = make_switch(double, "orders", wait_s=30)
    assert switch.wait_ready(5)
    assert not switch.degraded and switch.level is None
    time.sleep(0.3)  # the watch is now blocked on the key's index (for up to 30 s)
    written_at = time.monotonic()
    double.kv_put(KEY, switch_json())
    eventually(lambda: switch.is_off("recommendations"), timeout=20)
    seen_in = time.monotonic() - written_at
    # The write wakes the blocked query: a switch that only saw it when the 30 s wait ran out
    # would take 30 s. Ten leaves a slow machine its margin (no wall-clock bound under 2 s).
    assert seen_in < 10.0, f"the write took {seen_in:.2f} s to be seen (the wait is 30 s)"
    state = switch.state
    assert state.level == "partial" and switch.level == "partial"
    assert state.features_off == {"recommendations"}
    assert (state.reason, state.by, state.until_at) == ("inventory is slow", "alice", None)
    assert state.modify_index > 0
    assert not switch.is_off("checkout")


def test_deleting_the_key_restores_the_service_and_tells_the_callback(double, make_switch):
    changes = Recorder()
    double.kv_put(KEY, switch_json(features_off=["recommendations", "reviews"]))
    switch = make_switch(double, "orders", on_change=changes, wait_s=30)
    eventually(lambda: switch.is_off("reviews"))
    double.kv_delete(KEY)
    eventually(lambda: not switch.degraded)
    assert switch.state == NOT_DEGRADED
    assert not switch.is_off("recommendations")
    eventually(lambda: len(changes.states) == 2)
    assert changes.states[0].features_off == {"recommendations", "reviews"}
    assert changes.states[1] == NOT_DEGRADED


def test_past_until_the_switch_restores_itself_while_the_key_is_still_there(double, make_switch):
    changes = Recorder()
    until = datetime.now(UTC) + timedelta(seconds=2.5)
    double.kv_put(KEY, switch_json(until=rfc3339(until)))
    switch = make_switch(double, "orders", on_change=changes, wait_s=60)
    eventually(lambda: switch.degraded)
    assert abs((switch.state.until_at - until).total_seconds()) < 0.001
    eventually(lambda: not switch.degraded, timeout=10)
    assert datetime.now(UTC) >= until
    assert double.kv_get(KEY) is not None  # nobody deleted it
    # The blocking wait ends at `until`, so the callback hears of it without a change in Consul.
    eventually(lambda: changes.states and changes.states[-1] == NOT_DEGRADED, timeout=10)


def test_an_until_already_past_never_degrades(double, make_switch):
    past = datetime.now(UTC) - timedelta(minutes=5)
    double.kv_put(KEY, switch_json(until=rfc3339(past)))
    switch = make_switch(double, "orders")
    assert switch.wait_ready(5)
    eventually(lambda: switch.state.modify_index == 0 and switch.reads >= 1)
    assert not switch.degraded and not switch.is_off("recommendations")


def test_a_bad_value_is_not_degraded_and_is_warned_about_once(double, make_switch, caplog):
    caplog.set_level(logging.WARNING, logger="fleet.degrade")
    double.kv_put(KEY, switch_json())
    switch = make_switch(double, "orders", wait_s=30)
    eventually(lambda: switch.degraded)
    double.kv_put(KEY, '{"level": "partial", "features_off": ["recomm')  # cut short
    eventually(lambda: not switch.degraded)
    reads = switch.reads
    # Consul may answer a blocking query with nothing changed: the same bad value, again.
    eventually(lambda: (double.spurious_wake("/v1/kv/", True), switch.reads >= reads + 2)[1])
    warnings = [r for r in caplog.records if "is ignored" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "not JSON" in warnings[0].getMessage() and KEY in warnings[0].getMessage()
    assert switch.last_error is None  # the read itself went well
    # A good value afterwards is honoured again.
    double.kv_put(KEY, switch_json(features_off=["reviews"]))
    eventually(lambda: switch.is_off("reviews"))


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (b"", "no value"),
        (b"{oops", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'["recommendations"]', "not a JSON object"),
        (b'{"features_off": "recommendations"}', "features_off is not a list of strings"),
        (b'{"features_off": [1]}', "features_off is not a list of strings"),
        (b'{"level": 3}', "level is not a string"),
        (b'{"reason": {"x": 1}}', "reason is not a string"),
        (b'{"until": "tomorrow"}', "until is not an RFC 3339 time"),
        (b'{"until": "2026-01-01T10:00:00"}', "no time zone offset"),
        (b'{"until": 1767261600}', "until is not an RFC 3339 string"),
    ],
)
def test_a_value_unlike_the_design_is_refused_with_a_reason(value, complaint):
    with pytest.raises(InvalidSwitch, match=complaint):
        parse_switch(value)


def test_the_design_shape_parses_and_a_bare_object_degrades_at_the_default_level():
    state = parse_switch(switch_json(until="2026-12-02T07:00:00+01:00").encode(), 42)
    assert state.until_at == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert state.modify_index == 42 and state.is_off("recommendations")
    bare = parse_switch(b"{}")
    assert bare.degraded and bare.level == "degraded" and bare.features_off == frozenset()
    assert parse_switch(b'{"until": "2026-12-02T06:00:00z"}').until_at.hour == 6


def test_a_consul_restarted_from_scratch_is_followed_and_the_last_answer_kept_meanwhile(
    double, make_switch
):
    for n in range(300):  # the old server's index is far ahead of a fresh one's
        double.kv_put(f"other/{n}", "x")
    double.kv_put(KEY, switch_json())
    switch = make_switch(double, "orders", wait_s=30, retry_min_s=0.1, retry_max_s=0.5)
    eventually(lambda: switch.degraded)
    old_index = switch.state.modify_index
    assert old_index > 300
    port = double.port
    double.stop()
    eventually(lambda: switch.last_error is not None)
    # While Consul is away the service keeps what it last heard.
    assert switch.is_off("recommendations")
    with ConsulDouble() as fresh:
        fresh.stop()
        fresh.start(port=port)
        fresh.kv_put(KEY, switch_json(features_off=["reviews"]))
        restarted_at = time.monotonic()
        eventually(lambda: switch.is_off("reviews"), timeout=10)
        assert time.monotonic() - restarted_at < 5  # not after a 30 s wait on the old index
        assert switch.state.modify_index < old_index and switch.last_error is None
        # Watching the fresh server's index: a delete there is seen at once.
        fresh.kv_delete(KEY)
        eventually(lambda: not switch.degraded, timeout=2)


def test_an_index_that_goes_backwards_starts_the_watch_over(double, make_switch):
    double.kv_put(KEY, switch_json())
    switch = make_switch(double, "orders", wait_s=30)
    eventually(lambda: switch.degraded)
    double.inject_fault(f"/v1/kv/{KEY}", "index_backwards", count=1)
    double.kv_put(KEY, switch_json(features_off=["reviews"]))
    eventually(lambda: switch.is_off("reviews"))
    reads = switch.reads
    # Reset to 0, the next read does not block: it comes back at once with the real index.
    eventually(lambda: switch.reads >= reads + 1)
    double.kv_delete(KEY)
    eventually(lambda: not switch.degraded, timeout=2)


def test_an_acl_token_reads_the_key_and_a_missing_one_is_denied(make_switch):
    with ConsulDouble(acl_token="management") as guarded:
        guarded.kv_put(KEY, switch_json())
        reader = guarded.create_acl_token(rules={"key_prefix": {"quarterdeck/degrade/": "read"}})
        allowed = make_switch(guarded, "orders", token=reader)
        denied = make_switch(guarded, "orders", retry_min_s=0.1, retry_max_s=0.3)
        eventually(lambda: allowed.is_off("recommendations"))
        eventually(lambda: denied.last_error is not None)
        assert "403" in denied.last_error or "ACLPermissionDenied" in denied.last_error
        assert not denied.degraded and not denied.wait_ready(0)
        # The token went with every read: later writes are seen too.
        guarded.kv_put(KEY, switch_json(features_off=["reviews"]))
        eventually(lambda: allowed.is_off("reviews"))


def test_stop_ends_the_watch_thread(double, make_switch):
    switch = make_switch(double, "orders", wait_s=30)
    assert switch.wait_ready(5)
    time.sleep(0.2)
    if make_switch.transport == "http":
        # Its own connection is shut, so a pending 30 s blocking query does not hold it.
        assert switch.stop(timeout=5)
    else:
        switch.stop(timeout=0)
        double.stop()
        assert switch.stop(timeout=5)


def test_a_bad_service_name_or_address_is_refused():
    with pytest.raises(ValueError, match="service"):
        DegradeSwitch("127.0.0.1:8500", "a/b", start=False)
    with pytest.raises(ValueError, match="consul address"):
        DegradeSwitch("ftp://127.0.0.1:8500", "orders", start=False)


def test_consul_errors_are_retried_and_a_failing_callback_does_not_end_the_watch(
    double, make_switch, caplog
):
    caplog.set_level(logging.WARNING, logger="fleet.degrade")
    double.kv_put(KEY, switch_json())
    double.inject_fault(f"/v1/kv/{KEY}", "http_500", count=3)
    calls = []

    def failing(state) -> None:
        calls.append(state)
        raise RuntimeError("the service's own bug")

    switch = make_switch(double, "orders", on_change=failing, retry_min_s=0.05, retry_max_s=0.2)
    eventually(lambda: switch.degraded)
    assert switch.last_error is None and switch.reads >= 1
    errors = [r.getMessage() for r in caplog.records if "retrying with backoff" in r.getMessage()]
    assert len(errors) == 1 and "500" in errors[0], errors  # said once, not per retry
    eventually(lambda: any("on_change failed" in r.getMessage() for r in caplog.records))
    double.kv_delete(KEY)
    eventually(lambda: len(calls) == 2)  # the watch lived on after the callback raised
    assert calls[-1] == NOT_DEGRADED
