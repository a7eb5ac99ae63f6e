"""Mutated upstream files: the parser accepts exactly what the real `nginx -t` accepts.

Each case is the seed's file with one to three random edits (characters deleted, tokens such
as `;`, `}`, quotes, `backup`, `hash ...;`, `weight=0`, `zone z;` inserted). The random seed is
fixed, so a failure names a case that can be rerun.
"""

from __future__ import annotations

import random

import pytest

from collectors.nginx_conf import UpstreamConfError, parse_upstream_text

HTTP_FILE = """\
upstream push_backend {
    least_conn;
    server 10.0.1.11:8080 weight=3 max_fails=3 fail_timeout=30s;
    server 10.0.1.12:8080 weight=1;
    server 10.0.1.13:8080 down;
    server 10.0.1.14:8080 backup max_conns=5; # spare
    keepalive 8;
}
upstream "other" { ip_hash; server '10.0.2.1:81' "weight=2"; zone z 64k; }
"""
MAIN_HEAD = """\
events { worker_connections 64; }
http {
    access_log off;
"""
MAIN_UPSTREAM = """\
    upstream ws {
        random two least_conn;
        server 127.0.0.1:9001 max_conns=3;
        server 127.0.0.1:9002 down fail_timeout=1m30s;
        keepalive 4;
        zone ws 64k;
    }
"""
MAIN_TAIL = """\
    server { listen 127.0.0.1:8099; location / { proxy_pass http://ws; } }
}
"""
INSERTS = [
    *";{}\"'#\\ \n$=0",
    "backup", "down", "ip_hash;", "hash $remote_addr;", "hash $remote_addr consistent;",
    "random;", "random two;", "random x;", "least_conn;", "weight=0", "max_fails=",
    "fail_timeout=5ms", "fail_timeout=2h", "max_conns=-1", "slow_start=1s", " server 1.2.3.4:5;",
    "upstream a { server 1.1.1.1:1; }", "zone z;", "zone q 1k;", "zone z 128k;", "keepalive 0;",
    "keepalive_timeout 5ms;", "keepalive_time 1y;", "keepalive_requests x;", ":99999", ":0",
    "[::1]:80", "unix:/tmp/s", "include /dev/null;", "'a b'", '"x y"', "\\t", "upstream ",
    "server ", "http {", "events {}",
]  # fmt: skip


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text))
        if rng.random() < 0.4:
            text = text[:at] + text[at + rng.randint(1, 3) :]
        else:
            text = text[:at] + rng.choice(INSERTS) + text[at:]
    return text


def parser_accepts(text: str) -> tuple[bool, str]:
    try:
        parse_upstream_text(text, "upstream.conf")
    except UpstreamConfError as refused:
        return False, str(refused)
    return True, ""


def agree(text: str, verdict) -> bool:
    accepted, reason = parser_accepts(text)
    # nginx resolves host names when it loads the file; the parser does not.
    if not verdict.ok and "host not found in upstream" in verdict.output:
        return True
    assert accepted == verdict.ok, (
        f"nginx {'accepts' if verdict.ok else 'refuses'} it, the parser "
        f"{'accepts' if accepted else 'refuses'} it ({reason})\n"
        f"--- nginx:\n{verdict.output}\n--- file:\n{text}"
    )
    return True


@pytest.mark.parametrize("batch", range(3))
def test_mutated_upstream_files_get_the_same_verdict_as_nginx(batch, nginx_config_test):
    rng = random.Random(7001 + batch)
    for _ in range(50):
        text = mutate(HTTP_FILE, rng)
        assert agree(text, nginx_config_test(text))


def test_mutated_upstreams_in_a_whole_nginx_conf_get_the_same_verdict(nginx_config_test):
    # Only the upstream block is mutated: in a whole nginx.conf, server {} and location {}
    # blocks are nginx's to check (the [[nginx]] test command), not the parser's.
    rng = random.Random(9001)
    for _ in range(50):
        text = MAIN_HEAD + mutate(MAIN_UPSTREAM, rng) + MAIN_TAIL
        assert agree(text, nginx_config_test(text, context="main", name="nginx.conf"))
