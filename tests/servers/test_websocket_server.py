"""The WebSocket fixture really holds connections and answers plain HTTP health checks."""

from tests.fixtures.processes import http_get, wait_for
from tests.fixtures.websocket import open_websockets


def test_websocket_server_holds_connections_until_clients_leave(websocket_server_factory):
    server = websocket_server_factory()
    assert http_get(f"http://{server.address}/health")[0] == 200
    with open_websockets(f"ws://{server.address}/push", 5):
        assert server.open_connections == 5
    wait_for(lambda: server.open_connections == 0, "the closed connections to be gone")


def test_a_failing_websocket_server_fails_its_health_check(websocket_server_factory):
    server = websocket_server_factory()
    server.failing = True
    assert http_get(f"http://{server.address}/health")[0] == 503
