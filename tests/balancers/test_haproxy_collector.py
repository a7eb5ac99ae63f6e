"""The HAProxy collector against a real HAProxy: every field, every way in, every failure."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from collectors.balancers import BalancerServer
from collectors.base import SourceUnavailable
from collectors.haproxy import HAProxyCollector, parse_stats, server_state
from tests.fixtures.haproxy import HAProxyServer, Member
from tests.fixtures.processes import LOOPBACK, free_port, wait_for
from tests.fixtures.websocket import open_websockets


def servers_of(collector: HAProxyCollector) -> dict[tuple[str, str], BalancerServer]:
    [update] = collector.collect()
    return {(s.backend, s.server): s for s in update.servers}


def stable(server: BalancerServer) -> BalancerServer:
    """What stays the same between two reads a moment apart (clocks and counters move)."""
    return replace(server, last_change_s=None, check_status="", total_sessions=None)


@pytest.fixture
def push_fleet(haproxy_factory, websocket_server_factory):
    """HAProxy over two checked WebSocket servers (weights 3 and 1), a backup, a second backend."""
    one, two, spare, other = (websocket_server_factory() for _ in range(4))
    haproxy = haproxy_factory(
        [
            Member(one.address, weight=3),
            Member(two.address, weight=1),
            Member(spare.address, name="spare", backup=True),
        ],
        backend="push",
        http_check="/health",
        more_backends={"legacy": [Member(other.address, name="old1", check=False)]},
        unix_socket=True,
    )
    http = HAProxyCollector("edge", stats_url=haproxy.stats_csv_url)
    checked = [("push", "s1"), ("push", "s2"), ("push", "spare")]
    wait_for(
        lambda: all(servers_of(http)[key].status == "UP" for key in checked), "push servers UP"
    )
    return haproxy, (one, two, spare, other)


def test_every_field_of_servers_and_proxies_is_read_by_header_name(push_fleet):
    haproxy, (one, _two, spare, other) = push_fleet
    collector = HAProxyCollector("edge", runtime=haproxy.runtime_url)

    with open_websockets(haproxy.frontend_ws_url, 4):
        [update] = collector.collect()
    servers = {(s.backend, s.server): s for s in update.servers}
    proxies = {(p.kind, p.name): p for p in update.proxies}

    s1 = servers["push", "s1"]
    assert (s1.address, s1.port) == (LOOPBACK, one.port)
    assert (s1.state, s1.status, s1.transitional) == ("up", "UP", False)
    assert s1.check_status == "L7OK" and s1.weight == 3 and not s1.backup
    assert servers["push", "s2"].weight == 1
    assert servers["push", "spare"].backup and servers["push", "spare"].port == spare.port
    old = servers["legacy", "old1"]
    assert (old.state, old.status, old.port) == ("unchecked", "no check", other.port)
    total = sum(servers["push", name].sessions for name in ("s1", "s2", "spare"))
    assert total == 4 and servers["push", "spare"].sessions == 0
    assert all(
        servers["push", n].total_sessions >= servers["push", n].sessions for n in ("s1", "s2")
    )
    assert s1.max_sessions >= s1.sessions and s1.check_failures == 0
    assert s1.last_change_s is not None and s1.http_5xx == 0 and s1.session_rate is not None
    assert proxies["frontend", "fe"].sessions == 4 and proxies["frontend", "fe"].status == "OPEN"
    assert proxies["backend", "push"].sessions == 4 and proxies["backend", "push"].status == "UP"
    assert proxies["frontend", "fe"].session_limit > 0
    assert ("backend", "legacy") in proxies and ("frontend", "stats") in proxies
    assert update.balancer == "edge" and update.kind == "haproxy" and update.connections is None


def test_the_runtime_api_over_tcp_and_unix_and_the_stats_page_parse_the_same(push_fleet):
    haproxy, _ = push_fleet
    reads = {
        "tcp": HAProxyCollector("edge", runtime=haproxy.runtime_url),
        "unix": HAProxyCollector("edge", runtime=f"unix://{haproxy.runtime_socket}"),
        "http": HAProxyCollector("edge", stats_url=haproxy.stats_url),  # ";csv" is added
    }

    def same_three_ways():
        seen = {way: {k: stable(s) for k, s in servers_of(c).items()} for way, c in reads.items()}
        assert len(seen["tcp"]) == 4
        return seen["tcp"] == seen["unix"] == seen["http"]

    # Three reads a moment apart can straddle a check; a parse difference would never settle.
    wait_for(same_three_ways, "the same servers read three ways")


def test_the_runtime_api_is_preferred_when_both_are_configured(push_fleet):
    haproxy, _ = push_fleet
    both = HAProxyCollector(
        "edge", stats_url=f"http://{LOOPBACK}:1/stats", runtime=haproxy.runtime_url
    )

    assert ("push", "s1") in servers_of(both)  # the dead stats page was never asked


def test_a_server_failing_its_check_goes_down_through_the_transitional_state(push_fleet):
    haproxy, (one, *_rest) = push_fleet
    collector = HAProxyCollector("edge", runtime=haproxy.runtime_url)
    one.failing = True

    seen: set[str] = set()

    def down() -> bool:
        s1 = servers_of(collector)["push", "s1"]
        seen.add(s1.status)
        return s1.state == "down"

    wait_for(down, "s1 down")
    s1 = servers_of(collector)["push", "s1"]
    assert (s1.status, s1.check_status) == ("DOWN", "L7STS")
    assert s1.check_failures >= 2
    assert seen <= {"UP", "UP 1/2", "DOWN"}  # fall 2: one failed check shows as "UP 1/2"


def test_drain_and_maintenance_set_over_the_runtime_api_are_reported(push_fleet):
    haproxy, _ = push_fleet
    collector = HAProxyCollector("edge", runtime=haproxy.runtime_url)

    assert haproxy.send_runtime("set server push/s1 state drain").strip() == ""
    assert haproxy.send_runtime("set server push/s2 state maint").strip() == ""
    servers = servers_of(collector)

    assert (servers["push", "s1"].state, servers["push", "s1"].status) == ("drain", "DRAIN")
    assert (servers["push", "s2"].state, servers["push", "s2"].status) == ("maint", "MAINT")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("UP", ("up", False)),
        ("DOWN", ("down", False)),
        ("NOLB", ("nolb", False)),
        ("DRAIN", ("drain", False)),
        ("MAINT", ("maint", False)),
        ("no check", ("unchecked", False)),
        ("UP 1/3", ("up", True)),
        ("DOWN 1/2", ("down", True)),
        ("MAINT (via be/s1)", ("maint", False)),
        ("MAINT (resolution)", ("maint", False)),
        ("DRAIN (agent)", ("drain", False)),
    ],
)
def test_every_server_status_text_of_haproxy_2_6_has_its_state(status, expected):
    assert server_state(status) == expected


HEADER = "# pxname,svname,scur,smax,slim,stot,status,weight,act,bck,type,addr,"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("<html>not stats</html>\n", ["line 1", "# pxname,svname,"]),
        ("", ["line 1"]),
        ("# pxname,svname,status\n", ["line 1", "type", "scur"]),
        (HEADER + "\nbe,s1,0,0,,0,UP,1,1,0,2\n", ["line 2", "11 fields", "12"]),
        (HEADER + "\nbe,s1,lots,0,,0,UP,1,1,0,2,127.0.0.1:80,\n", ["line 2", "field scur"]),
        (
            HEADER + "\nbe,s1,0,0,,0,SLEEPY,1,1,0,2,127.0.0.1:80,\n",
            ["line 2", "field status", "SLEEPY"],
        ),  # fmt: skip
        (HEADER + "\nbe,s1,0,0,,0,UP,1,1,0,two,127.0.0.1:80,\n", ["line 2", "field type"]),
    ],
)
def test_malformed_csv_is_a_source_error_naming_the_line_and_field(text, names):
    with pytest.raises(SourceUnavailable) as error:
        parse_stats(text)
    assert all(name in error.value.reason for name in names), error.value.reason


@pytest.fixture
def answering_server() -> Iterator[Callable[[int, str], str]]:
    """A tiny HTTP server that answers every GET with a fixed status and body."""
    started: list[http.server.ThreadingHTTPServer] = []

    def start(status: int, body: str) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server calls)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://{LOOPBACK}:{server.server_address[1]}/stats"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_stats_page_answering_garbage_is_a_clear_source_error(answering_server):
    url = answering_server(200, "pxname;svname\nthis is not haproxy\n")
    with pytest.raises(SourceUnavailable, match=r"stats page: stats CSV line 1: expected a header"):
        HAProxyCollector("edge", stats_url=url).collect()

    url = answering_server(200, HEADER + "\nbe,s1,0,0,,0,UP 1/x,1,1,0,2,127.0.0.1:80,\n")
    with pytest.raises(SourceUnavailable, match=r"line 2, field status: unknown server status"):
        HAProxyCollector("edge", stats_url=url).collect()

    url = answering_server(503, "no server is available")
    with pytest.raises(SourceUnavailable, match="HTTP 503"):
        HAProxyCollector("edge", stats_url=url).collect()


def test_an_unreachable_haproxy_is_a_source_error(haproxy_factory, websocket_server_factory):
    haproxy: HAProxyServer = haproxy_factory([websocket_server_factory().address])
    haproxy.stop()

    with pytest.raises(SourceUnavailable, match="runtime API tcp://"):
        HAProxyCollector("edge", runtime=haproxy.runtime_url).collect()
    with pytest.raises(SourceUnavailable, match="stats page http://"):
        HAProxyCollector("edge", stats_url=haproxy.stats_csv_url).collect()
    with pytest.raises(SourceUnavailable, match="runtime API unix://"):
        HAProxyCollector("edge", runtime=f"unix:///nonexistent/{free_port()}.sock").collect()
