"""A real push path for the Push tests: WebSocket servers behind a real HAProxy, collected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from app.auth.accounts import create_user
from app.collection.registry import configured_sources
from app.collection.runner import RECORD_WRITERS, PassResult, run_pass
from app.config import HAProxyConfig
from app.context import Quarterdeck
from app.factory import create_app
from collectors.balancers import BalancerUpdate
from tests.conftest import PASSWORD, sign_in
from tests.fixtures.haproxy import HAProxyServer
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import WebSocketServer


@dataclass
class PushEdge:
    """HAProxy `edge` over WebSocket servers s1..sN (backend `push`), and a context reading it."""

    haproxy: HAProxyServer
    servers: list[WebSocketServer]
    qd: Quarterdeck
    _client: object = field(default=None, repr=False)

    def api(self) -> dict:
        """Read /api/v1/push/connections as a signed-in viewer."""
        if self._client is None:
            with self.qd.store.session() as db:
                create_user(db, "push-viewer", "viewer", PASSWORD)
            self._client = create_app(qd=self.qd).test_client()
            assert sign_in(self._client, "push-viewer").status_code == 302
        response = self._client.get("/api/v1/push/connections")
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    @property
    def collector(self):
        [source] = [s for s in configured_sources(self.qd.config, self.qd.clock)
                    if s.name == "edge"]  # fmt: skip
        return source.collector

    def collect(self) -> PassResult:
        """Run one real collection pass of the balancer."""
        return run_pass(self.qd, self.collector)

    def set_state(self, server: str, state: str) -> None:
        """Set a server's state over the runtime API (ready, drain, maint)."""
        answer = self.haproxy.send_runtime(f"set server push/{server} state {state}")
        assert answer.strip() == "", answer

    def wait_all_up(self) -> None:
        """Wait until every server is UP."""
        self.wait_up(*(f"s{n}" for n in range(1, len(self.servers) + 1)))

    def wait_up(self, *names: str) -> None:
        """Wait until these servers are UP."""

        def up() -> bool:
            [update] = self.collector.collect()
            states = {s.server: s.state for s in update.servers}
            return all(states.get(name) == "up" for name in names)

        wait_for(up, f"{', '.join(names)} up")


def seed_history(edge: PushEdge, minutes: int = 50) -> None:
    """Write past snapshots of the real balancer through the store writer: a rising hour."""
    [update] = edge.collector.collect()
    now = edge.qd.clock()
    for back in range(minutes, 0, -1):
        servers = tuple(
            replace(s, sessions=(minutes - back) // 10 + number)
            for number, s in enumerate(update.servers)
        )
        past = replace(update, observed_at=now - timedelta(minutes=back), servers=servers)
        with edge.qd.store.session(write=True) as db:
            RECORD_WRITERS[BalancerUpdate](db, past.balancer, past)


@pytest.fixture
def push_edge(haproxy_factory, websocket_server_factory, make_qd) -> Callable[..., PushEdge]:
    """Return a function that starts `count` WebSocket servers behind HAProxy `edge`."""

    def start(count: int = 2) -> PushEdge:
        servers = [websocket_server_factory() for _ in range(count)]
        haproxy = haproxy_factory([s.address for s in servers], backend="push",
                                  http_check="/health")  # fmt: skip
        config = HAProxyConfig(name="edge", stats_url=haproxy.stats_csv_url,
                               runtime=haproxy.runtime_url)  # fmt: skip
        edge = PushEdge(haproxy, servers, make_qd(haproxy=(config,)))
        edge.wait_all_up()
        return edge

    return start
