"""The nginx collector reads a real nginx: stub_status totals, servers from its upstream file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collectors.balancers import BalancerConnections, BalancerServer, BalancerUpdate
from collectors.base import SourceUnavailable
from collectors.nginx import NginxCollector, parse_stub_status
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets

OBSERVED_AT = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def collector_for(nginx, name: str = "push") -> NginxCollector:
    return NginxCollector(
        name, nginx.status_url, str(nginx.upstream_conf), clock=lambda: OBSERVED_AT
    )


def connections(collector: NginxCollector) -> BalancerConnections:
    [update] = collector.collect()
    assert update.connections is not None
    return update.connections


def test_active_connections_grow_by_the_websockets_held_through_nginx_and_fall_back(
    nginx_factory, websocket_server_factory
):
    first, second = websocket_server_factory(), websocket_server_factory()
    nginx = nginx_factory([first.address, second.address], upstream="push_backend")
    collector = collector_for(nginx)
    before = connections(collector)

    with open_websockets(nginx.ws_url, 6):
        held = connections(collector)
        assert first.open_connections + second.open_connections == 6
        assert held.active == before.active + 6
        assert held.accepts >= before.accepts + 6 and held.handled == held.accepts
        assert held.requests >= before.requests + 7  # six upgrades and this status read

    wait_for(lambda: connections(collector).active == before.active, "connections to close")


def test_servers_come_from_the_upstream_file_with_sessions_unknown(
    nginx_factory, websocket_server_factory
):
    servers = [websocket_server_factory() for _ in range(4)]
    nginx = nginx_factory(
        [
            f"{servers[0].address} weight=3 max_fails=3 fail_timeout=30s",
            f"{servers[1].address} weight=1",
            f"{servers[2].address} down",
            f"{servers[3].address} backup max_conns=50",
        ],
        upstream="push_backend",
        head=["least_conn"],
    )

    [update] = collector_for(nginx).collect()

    assert isinstance(update, BalancerUpdate)
    assert (update.balancer, update.kind, update.observed_at) == ("push", "nginx", OBSERVED_AT)
    assert update.per_server_sessions is False
    host, ports = "127.0.0.1", [s.port for s in servers]
    assert update.servers == (
        BalancerServer(
            "push_backend", servers[0].address, host, ports[0], state="up", status="",
            weight=3, max_fails=3, fail_timeout_s=30.0,
        ),
        BalancerServer(
            "push_backend", servers[1].address, host, ports[1], state="up", status="",
            weight=1, max_fails=1, fail_timeout_s=10.0,
        ),
        BalancerServer(
            "push_backend", servers[2].address, host, ports[2], state="down", status="down",
            weight=1, max_fails=1, fail_timeout_s=10.0,
        ),
        BalancerServer(
            "push_backend", servers[3].address, host, ports[3], state="up", status="backup",
            weight=1, backup=True, session_limit=50, max_fails=1, fail_timeout_s=10.0,
        ),
    )  # fmt: skip
    assert all(server.sessions is None for server in update.servers)


def test_the_source_says_it_reports_totals_only_and_configured_state(nginx_factory):
    nginx = nginx_factory(["127.0.0.1:9"])
    collector = collector_for(nginx)

    collector.collect()

    warnings = {w.kind: w.message for w in collector.warnings()}
    assert set(warnings) == {"totals_only", "configured_state"}
    assert "connection totals only" in warnings["totals_only"]
    assert "no active health checks" in warnings["configured_state"]


def test_a_server_marked_down_shows_as_down_after_reload_and_gets_no_new_connections(
    nginx_factory, websocket_server_factory
):
    kept, drained = websocket_server_factory(), websocket_server_factory()
    nginx = nginx_factory([kept.address, drained.address])
    collector = collector_for(nginx)
    assert [s.state for s in collector.collect()[0].servers] == ["up", "up"]

    nginx.write_upstream([kept.address, f"{drained.address} down"])
    nginx.reload()

    [update] = collector.collect()
    assert [(s.server, s.state, s.status) for s in update.servers] == [
        (kept.address, "up", ""),
        (drained.address, "down", "down"),
    ]
    with open_websockets(nginx.ws_url, 4):
        assert (kept.open_connections, drained.open_connections) == (4, 0)


def test_a_stopped_nginx_is_unavailable_never_zero(nginx_factory):
    nginx = nginx_factory(["127.0.0.1:9"])
    collector = collector_for(nginx)
    assert connections(collector).active >= 1  # the status read itself is active

    nginx.stop()

    with pytest.raises(SourceUnavailable) as failed:
        collector.collect()
    assert f"cannot reach stub_status at {nginx.status_url}" in failed.value.reason


def test_a_page_that_is_not_stub_status_is_a_source_error(nginx_factory, websocket_server_factory):
    server = websocket_server_factory()
    nginx = nginx_factory([server.address])
    not_status = NginxCollector(
        "push", f"http://{server.address}/health", clock=lambda: OBSERVED_AT
    )
    proxied = NginxCollector("push", nginx.url, clock=lambda: OBSERVED_AT)

    with pytest.raises(SourceUnavailable) as malformed:
        not_status.collect()
    with pytest.raises(SourceUnavailable) as refused:
        proxied.collect()

    assert "stub_status answer is not nginx's four lines (got 1): 'OK\\n'" in (
        malformed.value.reason
    )
    # The WebSocket server refuses a plain GET: the collector names the status it got.
    assert f"stub_status at {nginx.url} answered HTTP 426" in refused.value.reason


def test_an_upstream_file_nginx_would_refuse_is_a_config_error_naming_the_line(
    nginx_factory,
):
    nginx = nginx_factory(["127.0.0.1:9"])
    collector = collector_for(nginx)
    assert collector.collect()[0].servers[0].weight == 1  # the good file, parsed and kept
    nginx.upstream_conf.write_text("upstream app {\n    server 127.0.0.1:9 weight=0;\n}\n")

    with pytest.raises(SourceUnavailable) as refused:
        collector.collect()

    assert refused.value.config_error
    assert f'{nginx.upstream_conf}:2: invalid parameter "weight=0"' in refused.value.reason

    nginx.upstream_conf.write_text("upstream app {\n    server 127.0.0.1:9 weight=2;\n}\n")
    [update] = collector.collect()  # mended: read again
    assert [(s.server, s.weight) for s in update.servers] == [("127.0.0.1:9", 2)]


def test_a_missing_upstream_file_is_a_config_error(nginx_factory, tmp_path):
    nginx = nginx_factory(["127.0.0.1:9"])
    missing = tmp_path / "nope.conf"
    collector = NginxCollector("push", nginx.status_url, str(missing), clock=lambda: OBSERVED_AT)

    with pytest.raises(SourceUnavailable) as failed:
        collector.collect()

    assert failed.value.config_error
    assert f"cannot read upstream file {missing}: No such file or directory" == failed.value.reason


def test_without_an_upstream_file_only_totals_are_read(nginx_factory):
    nginx = nginx_factory(["127.0.0.1:9"])
    collector = NginxCollector("push", nginx.status_url, clock=lambda: OBSERVED_AT)

    [update] = collector.collect()

    assert update.servers == () and update.connections.active >= 1
    assert [w.kind for w in collector.warnings()] == ["totals_only", "no_upstream_conf"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not nginx's four lines (got 1)"),
        (
            "Active connections: 2 \nserver accepts handled requests\n 1 1 x \n"
            "Reading: 0 Writing: 1 Waiting: 1 \n",
            "line 3 is not accepts handled requests: ' 1 1 x '",
        ),
        (
            "Active connections: -1\nserver accepts handled requests\n 1 1 1 \n"
            "Reading: 0 Writing: 1 Waiting: 1 \n",
            "line 1 is not Active connections",
        ),
        (
            "Active connections: 1 \nserver accepts handled requests\n 1 1 1 \n"
            "Reading: 0 Writing: 1\n",
            "line 4 is not Reading/Writing/Waiting",
        ),
    ],
)
def test_malformed_status_text_names_what_is_wrong(text, says):
    with pytest.raises(SourceUnavailable) as malformed:
        parse_stub_status(text)
    assert says in malformed.value.reason


def test_status_text_reads_every_figure():
    text = (
        "Active connections: 291 \nserver accepts handled requests\n"
        " 16630948 16630947 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n"
    )
    assert parse_stub_status(text) == BalancerConnections(
        active=291, accepts=16630948, handled=16630947, requests=31070465,
        reading=6, writing=179, waiting=106,
    )  # fmt: skip


def test_a_server_listed_twice_is_kept_once_with_a_warning(nginx_factory):
    nginx = nginx_factory(["127.0.0.1:9 weight=3", "127.0.0.1:10", "127.0.0.1:9 weight=2"])
    collector = collector_for(nginx)

    [update] = collector.collect()

    assert [(s.server, s.weight) for s in update.servers] == [
        ("127.0.0.1:9", 3),
        ("127.0.0.1:10", 1),
    ]
    [note] = [w.message for w in collector.warnings() if w.kind == "upstream_conf"]
    assert note == (
        f'{nginx.upstream_conf}: line 4: in upstream "app", server 127.0.0.1:9 is listed again '
        "(first on line 2); nginx balances to both entries, Quarterdeck shows the first"
    )
