"""The Sources page says which tool is not running here and how to add it."""

from __future__ import annotations

import html

from app.config import HAProxyConfig, NginxConfig
from app.factory import create_app
from app.queries.sources import source_hints
from tests.conftest import sign_in, test_config

EDGE = HAProxyConfig(name="edge", stats_url="http://127.0.0.1:1/stats;csv")


def test_in_the_demo_each_tool_not_installed_is_named_with_how_to_install_it(tmp_path):
    config = test_config("sqlite://", demo=True)
    hints = {h.kind: h for h in source_hints(config, search_path=str(tmp_path))}
    assert sorted(hints) == ["haproxy", "nginx", "prometheus"]
    assert {h.reason for h in hints.values()} == {"demo-not-installed"}
    assert hints["nginx"].install == "sudo apt-get install nginx-light"
    assert hints["haproxy"].config_lines.startswith('[[haproxy]]\nname = "edge"\n')
    # A tool found on the search path is only not configured.
    (tmp_path / "prometheus").write_text("#!/bin/sh\n")
    (tmp_path / "prometheus").chmod(0o755)
    found = {h.kind: h for h in source_hints(config, search_path=str(tmp_path))}
    assert found["prometheus"].reason == "demo-not-configured" and found["prometheus"].installed


def test_a_configured_tool_needs_no_hint_and_outside_the_demo_nothing_is_offered(tmp_path):
    demo = test_config("sqlite://", demo=True, haproxy=(EDGE,))
    assert "haproxy" not in {h.kind for h in source_hints(demo, search_path=str(tmp_path))}
    assert source_hints(test_config("sqlite://"), search_path=str(tmp_path)) == []


def test_an_nginx_whose_reload_command_is_missing_is_named(tmp_path):
    nginx = NginxConfig(
        name="push-edge",
        status_url="http://127.0.0.1:1/nginx_status",
        reload=("no-such-nginx", "-s", "reload"),
    )
    (hint,) = source_hints(test_config("sqlite://", nginx=(nginx,)), search_path=str(tmp_path))
    assert (hint.kind, hint.binary, hint.reason) == ("nginx", "no-such-nginx", "reload-missing")
    assert "[[nginx]] push-edge" in hint.detail


def test_the_sources_page_shows_the_missing_tools_of_the_demo(
    make_qd, make_user, monkeypatch, tmp_path
):
    # Nothing on PATH: prometheus (in /usr/bin on Debian) is not found.
    monkeypatch.setenv("PATH", str(tmp_path))
    qd = make_qd(demo=True, haproxy=(EDGE,))
    make_user("olga", "viewer")
    client = create_app(qd=qd).test_client()
    sign_in(client, "olga")
    page = html.unescape(client.get("/sources").get_data(as_text=True))
    assert 'data-source-hint="prometheus" data-hint-reason="demo-not-installed"' in page
    assert "sudo apt-get install prometheus" in page
    assert '[prometheus]\nurl = "http://127.0.0.1:9090"' in page
    assert 'data-source-hint="haproxy"' not in page  # configured: it is a source above
    assert 'data-source="edge"' in page


def test_the_sources_page_of_a_deployment_offers_nothing(make_qd, make_user):
    qd = make_qd()
    make_user("olga", "viewer")
    client = create_app(qd=qd).test_client()
    sign_in(client, "olga")
    assert "data-source-hint" not in client.get("/sources").get_data(as_text=True)
