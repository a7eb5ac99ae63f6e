"""The [[nginx]] section: the `test` command and the collector it builds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.collection.registry import configured_sources
from app.config import ConfigError, load_config, parse_config
from collectors.nginx import NginxCollector


def nginx_section(**keys) -> dict:
    return {"nginx": [{"name": "push", "status_url": "http://127.0.0.1:8081/s", **keys}]}


def test_test_defaults_to_the_reload_command_with_dash_t():
    assert parse_config(nginx_section()).nginx[0].test == ("nginx", "-t")
    custom = parse_config(nginx_section(reload=["sudo", "nginx", "-p", "/srv", "-s", "reload"]))
    assert custom.nginx[0].test == ("sudo", "nginx", "-p", "/srv", "-t")


def test_an_explicit_test_command_is_kept(tmp_path):
    path = tmp_path / "quarterdeck.toml"
    path.write_text(
        '[[nginx]]\nname = "push"\nstatus_url = "http://127.0.0.1:8081/s"\n'
        'upstream_conf = "/etc/nginx/conf.d/push-upstreams.conf"\n'
        'reload = ["systemctl", "reload", "nginx"]\ntest = ["nginx", "-t", "-q"]\n'
    )
    config = load_config(path, environ={})
    assert config.nginx[0].test == ("nginx", "-t", "-q")
    assert config.nginx[0].upstream_conf == "/etc/nginx/conf.d/push-upstreams.conf"


def test_a_reload_without_dash_s_reload_needs_an_explicit_test():
    with pytest.raises(ConfigError) as refused:
        parse_config(nginx_section(reload=["systemctl", "reload", "nginx"]), "qd.toml")
    assert str(refused.value) == (
        "qd.toml: [[nginx]] 'push' test is not set and reload "
        "['systemctl', 'reload', 'nginx'] has no \"-s reload\" to replace with \"-t\": set test"
    )


def test_test_must_be_a_list():
    with pytest.raises(ConfigError, match=r"\[nginx\[0\]\] test must be a list"):
        parse_config(nginx_section(test="nginx -t"))


def test_each_nginx_section_gets_its_collector():
    config = parse_config(
        {
            "nginx": [
                {"name": "push", "status_url": "http://127.0.0.1:8081/s", "upstream_conf": "/u"},
                {"name": "edge2", "status_url": "http://127.0.0.1:8082/s"},
            ]
        }
    )
    sources = configured_sources(config, lambda: datetime.now(UTC))
    collectors = [s.collector for s in sources]
    assert [(s.name, s.kind) for s in sources] == [("push", "nginx"), ("edge2", "nginx")]
    assert all(isinstance(c, NginxCollector) for c in collectors)
    assert [(c.name, c.status_url, c.upstream_conf) for c in collectors] == [
        ("push", "http://127.0.0.1:8081/s", "/u"),
        ("edge2", "http://127.0.0.1:8082/s", ""),
    ]
