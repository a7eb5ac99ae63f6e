"""What the adapters send and edit, checked against the real nginx -t and the Consul double."""

from __future__ import annotations

import consul
import pytest

from app.actions.consul import ConsulAdapter
from app.actions.haproxy import HAProxyAdapter
from app.actions.nginx import edit_server_line
from app.actions.steps import StepFailed
from demo.consul import ConsulDouble

FILE = """\
upstream web {
    least_conn;
    server 10.0.0.1:80 weight=3 max_fails=2;  # rack a
    server 10.0.0.2:80 down;
}
"""


def test_marking_down_keeps_the_other_parameters_and_the_comment(nginx_config_test):
    edited = edit_server_line(FILE, 3, "10.0.0.1:80", {"state": "down"})

    assert edited.splitlines()[2] == "    server 10.0.0.1:80 weight=3 max_fails=2 down;  # rack a"
    assert edited.splitlines()[3] == FILE.splitlines()[3]
    assert nginx_config_test(edited).ok


def test_ready_removes_down_and_a_weight_replaces_the_old_one(nginx_config_test):
    edited = edit_server_line(FILE, 4, "10.0.0.2:80", {"state": "ready", "weight": 5})

    assert edited.splitlines()[3] == "    server 10.0.0.2:80 weight=5;"
    assert nginx_config_test(edited).ok


def test_a_server_written_over_two_lines_is_refused():
    text = "upstream web {\n    server 10.0.0.1:80\n        weight=2;\n}\n"

    with pytest.raises(StepFailed, match="not written on one line"):
        edit_server_line(text, 2, "10.0.0.1:80", {"state": "down"})


def test_a_server_name_that_would_extend_the_runtime_command_is_refused():
    adapter = HAProxyAdapter("edge", "tcp://127.0.0.1:1")

    with pytest.raises(StepFailed, match="cannot be sent"):
        adapter.describe({"backend": "web", "server": "s1\nshutdown sessions"}, {"state": "drain"})


def test_maintenance_goes_to_the_agent_of_the_instances_node():
    adapter = ConsulAdapter("http://127.0.0.1:8500", agent_url="http://{node}.node.consul:8500")

    described = adapter.describe(
        {"service": "web", "service_id": "web-1", "node": "node-1"},
        {"maintenance": True, "reason": "disk swap"},
    )

    assert described == (
        "consul: PUT http://node-1.node.consul:8500/v1/agent/service/maintenance/web-1"
        "?enable=true&reason=disk%20swap"
    )
    assert ConsulAdapter("http://127.0.0.1:8500").agent_for("node-1") == "http://127.0.0.1:8500"


def test_a_kv_write_with_cas_takes_only_the_index_it_was_given():
    with ConsulDouble() as double:
        adapter = ConsulAdapter(double.url)
        try:
            assert adapter.write_kv("quarterdeck/degrade/web", b"on", cas=0) is True
            assert adapter.write_kv("quarterdeck/degrade/web", b"again", cas=0) is False
            client = consul.Consul(host="127.0.0.1", port=int(double.url.rsplit(":", 1)[1]))
            _, item = client.kv.get("quarterdeck/degrade/web")
            index = item["ModifyIndex"]
            assert adapter.write_kv("quarterdeck/degrade/web", b"off", cas=index + 100) is False
            assert adapter.write_kv("quarterdeck/degrade/web", b"off", cas=index) is True
            assert double.kv_get("quarterdeck/degrade/web") == b"off"
        finally:
            adapter.close()
