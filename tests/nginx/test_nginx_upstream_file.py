"""The upstream file parser reads what nginx reads and refuses what nginx refuses.

Every file here also goes through the real `nginx -t`, so the parser is checked against
nginx itself, not against what we believe nginx does.
"""

from __future__ import annotations

import pytest

from collectors.nginx_conf import (
    UpstreamConfError,
    UpstreamServer,
    parse_time,
    parse_upstream_file,
    parse_upstream_text,
)

SEED = """\
upstream push_backend {
    least_conn;
    server 10.0.1.11:8080 weight=3 max_fails=3 fail_timeout=30s;
    server 10.0.1.12:8080 weight=1;
    server 10.0.1.13:8080 down;
    server 10.0.1.14:8080 backup;
}
"""


def test_the_seed_lines_parse_exactly_and_nginx_accepts_them(tmp_path, nginx_config_test):
    path = tmp_path / "push-upstreams.conf"
    path.write_text(SEED)

    parsed = parse_upstream_file(path)

    assert nginx_config_test(SEED).ok
    assert parsed.context == "http"
    [upstream] = parsed.upstreams
    assert (upstream.name, upstream.line, upstream.method) == ("push_backend", 1, "least_conn")
    assert [(d.name, d.args, d.line) for d in upstream.directives] == [("least_conn", (), 2)]
    assert upstream.servers == (
        UpstreamServer(
            "10.0.1.11:8080", "10.0.1.11", 8080, line=3, weight=3, max_fails=3, fail_timeout_s=30
        ),
        UpstreamServer("10.0.1.12:8080", "10.0.1.12", 8080, line=4, weight=1),
        UpstreamServer("10.0.1.13:8080", "10.0.1.13", 8080, line=5, down=True),
        UpstreamServer("10.0.1.14:8080", "10.0.1.14", 8080, line=6, backup=True),
    )
    assert [s.status for s in upstream.servers] == ["", "", "down", "backup"]
    # nginx's defaults where the line says nothing
    assert (upstream.servers[1].max_fails, upstream.servers[1].fail_timeout_s) == (1, 10)
    assert upstream.servers[1].max_conns == 0


def test_a_whole_nginx_conf_is_read_from_its_http_block(nginx_config_test):
    text = """\
# the main configuration, upstreams inside http {}
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    map $http_upgrade $connection_upgrade {
        default upgrade;
        '' close;
    }
    upstream "ws" {  # a quoted name
        ip_hash;
        zone ws 64k;
        server 127.0.0.1:9001 max_conns=100 'fail_timeout=1m30s';
        server [::1]:9002 weight=5 max_fails=0;
        server unix:/run/ws.sock down;
        keepalive 16;
        keepalive_timeout 500ms;
    }
    upstream api {
        hash $remote_addr consistent;
        server 127.0.0.1:9003;
    }
    server {
        listen 127.0.0.1:8099;
        location / { proxy_pass http://ws; }
    }
}
"""
    parsed = parse_upstream_text(text, "nginx.conf")

    assert nginx_config_test(text, context="main", name="nginx.conf").ok
    assert parsed.context == "main"
    ws, api = parsed.upstreams
    assert (ws.name, ws.method, api.method) == ("ws", "ip_hash", "hash")
    assert [d.name for d in ws.directives] == ["ip_hash", "zone", "keepalive", "keepalive_timeout"]
    assert [(s.host, s.port, s.max_conns, s.fail_timeout_s) for s in ws.servers] == [
        ("127.0.0.1", 9001, 100, 90),
        ("::1", 9002, 0, 10),
        ("unix:/run/ws.sock", 0, 0, 10),
    ]
    assert ws.servers[1].max_fails == 0
    assert ws.servers[2].down
    assert api.directives[0].args == ("$remote_addr", "consistent")


def test_an_http_context_file_may_hold_other_http_directives_and_notes_includes(
    nginx_config_test,
):
    text = """\
map $http_upgrade $connection_upgrade { default upgrade; '' close; }
include /dev/null;
upstream a { server 127.0.0.1:9001; }
upstream b { server 127.0.0.1:9002 backup; server 127.0.0.1:9003; ip_hash; }
"""
    parsed = parse_upstream_text(text, "up.conf")

    assert nginx_config_test(text).ok
    assert [u.name for u in parsed.upstreams] == ["a", "b"]
    assert parsed.notes == (
        "line 2: include /dev/null is not followed; upstreams in it are not read",
    )
    # nginx accepts a backup placed before ip_hash, and then never uses it: say so.
    [note] = parsed.upstreams[1].notes
    assert 'in upstream "b", ip_hash never uses the backup server 127.0.0.1:9002' in note


@pytest.mark.parametrize(
    ("text", "line", "says", "nginx_line"),
    [
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 weight=2 slow_start=10s;\n}\n",
            2, 'invalid parameter "slow_start=10s"', 2, id="unknown-server-parameter",
        ),
        pytest.param(
            "upstream a {\n    ip_hash;\n    server 10.0.0.1:80 backup;\n}\n",
            3, '"ip_hash" balancing method of upstream "a" does not support the "backup"', 3,
            id="backup-with-ip_hash",
        ),
        pytest.param(
            "upstream a {\n    hash $remote_addr;\n    server 10.0.0.1:80;\n"
            "    server 10.0.0.2:80 backup;\n}\n",
            4, '"hash" balancing method', 4, id="backup-with-hash",
        ),
        pytest.param(
            "upstream a {\n    random two least_conn;\n    server 10.0.0.2:80 backup;\n}\n",
            3, '"random" balancing method', 3, id="backup-with-random",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 max_fails=three;\n}\n",
            2, 'invalid parameter "max_fails=three"', 2, id="bad-number",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 weight=-1;\n}\n",
            2, 'invalid parameter "weight=-1"', 2, id="negative-weight",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 fail_timeout=10x;\n}\n",
            2, 'invalid parameter "fail_timeout=10x"', 2, id="bad-time",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 fail_timeout=500ms;\n}\n",
            2, "nginx refuses ms here", 2, id="fail_timeout-in-ms",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 weight=0;\n}\n",
            2, "weight must be a whole number of at least 1", 2, id="weight-zero",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80\n    server 10.0.0.2:80;\n}\n",
            2, '"server 10.0.0.1:80" is missing its ";": the "server" on line 3', 3,
            id="missing-semicolon-between-servers",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80\n}\n",
            2, 'is missing its ";" before the "}" on line 3', 3,
            id="missing-semicolon-before-brace",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n", 1, "never closed", 3,
            id="unclosed-brace",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n}\n}\n", 4, 'unexpected "}"', 4,
            id="extra-closing-brace",
        ),
        pytest.param(
            "upstream push {\n    server 10.0.0.1:80;\n}\n"
            "upstream Push {\n    server 10.0.0.2:80;\n}\n",
            4, 'duplicate upstream "Push": first defined on line 1', 4,
            id="duplicate-upstream-name",
        ),
        pytest.param(
            "upstream a {\n}\n", 2, 'no servers are inside upstream "a"', 2, id="no-servers",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 backup;\n}\n", 1, "only backup servers", 1,
            id="only-backup-servers",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:99999;\n}\n", 2, "invalid port", 2,
            id="port-out-of-range",
        ),
        pytest.param(
            "upstream a {\n    server http://10.0.0.1:80;\n}\n", 2, "invalid host", 2,
            id="url-not-address",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n    sticky cookie srv_id;\n}\n",
            3, 'unknown directive "sticky" in upstream "a" (NGINX Plus only)', 3,
            id="plus-directive",
        ),
        pytest.param(
            "upstream a {\n    least_conn on;\n    server 10.0.0.1:80;\n}\n",
            2, 'invalid number of arguments in "least_conn"', 2, id="least_conn-argument",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n    keepalive 0;\n}\n",
            3, 'invalid value "0" in "keepalive"', 3, id="keepalive-zero",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80 \"weight=2\"x;\n}\n",
            2, 'unexpected "x" right after a quoted parameter', 2, id="text-after-quote",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n}\nhttp {\n}\n",
            1, '"upstream" is not allowed at the top of a file that has a "http" block', None,
            id="upstream-beside-http",
        ),
        pytest.param(
            "upstream a;\n", 1, 'has no opening "{"', 1, id="upstream-without-block",
        ),
        pytest.param(
            "upstrem a {\n    server 10.0.0.1:80;\n}\n",
            1, 'unknown directive "upstrem" in the http context (did you mean "upstream"?)', 1,
            id="mistyped-upstream",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n    zone shared;\n}\n",
            3, 'zone "shared" has no size', None, id="zone-without-size",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n    zone z 64k;\n}\n"
            "upstream b {\n    server 10.0.0.2:80;\n    zone z 128k;\n}\n",
            7, 'zone "z" is 131072 bytes here but 65536 on line 3', 7,
            id="zone-sizes-conflict",
        ),
        pytest.param(
            "upstream a {\n    server 10.0.0.1:80;\n    zone z 1k;\n}\n",
            3, 'zone "z" is too small', 3, id="zone-too-small",
        ),
    ],
)  # fmt: skip
def test_a_file_nginx_refuses_is_refused_naming_its_line(
    text, line, says, nginx_line, nginx_config_test
):
    with pytest.raises(UpstreamConfError) as refused:
        parse_upstream_text(text, "push-upstreams.conf")

    assert refused.value.line == line
    assert says in refused.value.message
    assert str(refused.value).startswith(f"push-upstreams.conf:{line}: ")
    verdict = nginx_config_test(text, name="push-upstreams.conf")
    assert not verdict.ok, f"nginx accepted what the parser refused:\n{text}"
    if nginx_line is not None:
        assert f"push-upstreams.conf:{nginx_line}" in verdict.output, verdict.output


def test_a_zone_sized_by_another_upstream_and_an_include_inside_a_block_are_accepted(
    nginx_config_test,
):
    text = (
        "upstream a {\n    zone shared;\n    server 10.0.0.1:80;\n    include /dev/null;\n}\n"
        "upstream b {\n    zone shared 64k;\n    server 10.0.0.2:80;\n}\n"
    )

    a, b = parse_upstream_text(text).upstreams

    assert nginx_config_test(text).ok
    assert [d.args for d in a.directives] == [("shared",)]
    assert a.notes == ("line 4: include /dev/null is not followed; servers in it are not read",)


def test_a_file_nginx_accepts_with_a_warning_parses_with_a_note(nginx_config_test):
    text = "upstream a {\n    ip_hash;\n    least_conn;\n    server 10.0.0.1:80;\n}\n"

    [upstream] = parse_upstream_text(text).upstreams

    verdict = nginx_config_test(text)
    assert verdict.ok and "load balancing method redefined" in verdict.output
    assert upstream.method == "least_conn"
    assert upstream.notes == (
        'line 3: in upstream "a", least_conn replaces ip_hash '
        "(nginx warns: load balancing method redefined)",
    )


@pytest.mark.parametrize(
    ("text", "seconds", "millis"),
    [
        ("10s", 10, 10_000),
        ("1m", 60, 60_000),
        ("30", 30, 30_000),
        ("1m30s", 90, 90_000),
        ("1h 30m", 5400, 5_400_000),
        ("500ms", None, 500),
        ("1y", 31_536_000, None),
        ("30s1m", None, None),
        ("1s1s", None, None),
        ("", None, None),
        ("10 s", None, None),
    ],
)
def test_times_read_with_nginx_units(text, seconds, millis):
    assert parse_time(text, seconds=True) == seconds
    assert parse_time(text, seconds=False) == millis


@pytest.mark.parametrize("value", ["10s", "1m", "1m30s", "30", "1h", "2d"])
def test_every_fail_timeout_the_parser_accepts_nginx_accepts(value, nginx_config_test):
    text = f"upstream a {{\n    server 10.0.0.1:80 fail_timeout={value};\n}}\n"
    [upstream] = parse_upstream_text(text).upstreams
    assert upstream.servers[0].fail_timeout_s == parse_time(value)
    assert nginx_config_test(text).ok
