"""The demo's generated upstream file, and its drained form, read as nginx reads them."""

from __future__ import annotations

from collectors.nginx_conf import parse_upstream_text
from demo.fleet.configs import nginx_upstreams
from demo.fleet.nginx_drain import with_down
from demo.fleet.topology import instance_count, plan_instances


def test_the_demo_upstream_file_and_a_drained_server_parse_as_nginx_accepts_them(
    nginx_config_test,
):
    planned = plan_instances(list(range(20000, 20000 + instance_count())))
    push = [i for i in planned if i.service == "push"]
    text = nginx_upstreams(planned)
    drained = with_down(text, push[0].address, True)

    assert nginx_config_test(text).ok and nginx_config_test(drained).ok
    [upstream] = parse_upstream_text(text).upstreams
    assert [s.address for s in upstream.servers] == [i.address for i in push]
    assert not any(s.down for s in upstream.servers)
    [after] = parse_upstream_text(drained).upstreams
    assert [s.down for s in after.servers] == [True] + [False] * (len(push) - 1)
    # The drain keeps every other parameter of the line.
    assert after.servers[0].weight == upstream.servers[0].weight
    assert after.servers[0].max_conns == upstream.servers[0].max_conns
