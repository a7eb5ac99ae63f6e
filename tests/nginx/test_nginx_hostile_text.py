"""Text from an nginx upstream file is fleet text: the pages show it escaped, never as markup."""

from __future__ import annotations

import pytest

from app.collection.registry import configured_sources
from app.collection.runner import run_pass
from app.config import NginxConfig
from app.factory import create_app
from tests.conftest import sign_in

pytestmark = pytest.mark.parametrize("app_store_url", ["sqlite", "postgresql"], indirect=True)

UPSTREAM = '<img src=x onerror="alert(1)">'


def test_upstream_names_and_notes_are_escaped_on_the_pages(
    nginx_factory, make_qd, make_user, nginx_config_test
):
    nginx = nginx_factory(["127.0.0.1:9"])
    text = (
        f"upstream '{UPSTREAM}' {{\n    server 127.0.0.1:9 backup;\n"
        "    server 127.0.0.1:10;\n    hash $remote_addr;\n}\n"
    )
    assert nginx_config_test(text).ok  # nginx takes the name as it is
    nginx.upstream_conf.write_text(text)
    qd = make_qd(
        nginx=(
            NginxConfig(
                name="push", status_url=nginx.status_url, upstream_conf=str(nginx.upstream_conf)
            ),
        )
    )
    [source] = configured_sources(qd.config, qd.clock)
    assert run_pass(qd, source.collector).ok
    make_user("olga", "viewer")
    client = create_app(qd=qd).test_client()
    sign_in(client, "olga")

    services = client.get("/services").get_data(as_text=True)
    sources = client.get("/sources").get_data(as_text=True)

    assert "&lt;img src=x onerror=" in services and UPSTREAM not in services
    # The note on the backup that hash never uses names the upstream: as text.
    assert 'data-warning-kind="upstream_conf"' in sources
    assert "hash never uses the backup server 127.0.0.1:9" in sources
    assert "&lt;img src=x onerror=" in sources and "<img" not in sources
