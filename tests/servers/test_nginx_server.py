"""The nginx_factory fixture runs a real nginx whose upstream file can be edited and reloaded."""

import re

from tests.fixtures.nginx import upstream_block
from tests.fixtures.processes import http_get


def accepted_connections(status_text):
    """Return the `accepts` counter of a stub_status page."""
    assert re.search(r"^Active connections: \d+", status_text, re.MULTILINE)
    counters = re.search(
        r"^server accepts handled requests\n\s*(\d+) (\d+) (\d+)", status_text, re.M
    )
    return int(counters.group(1))


def test_stub_status_counts_accepted_connections(nginx_factory, static_site_factory):
    site = static_site_factory({"index.html": "backend"})
    nginx = nginx_factory([site.address])

    before = accepted_connections(http_get(nginx.status_url)[1])
    assert http_get(nginx.url) == (200, "backend")
    after = accepted_connections(http_get(nginx.status_url)[1])

    assert after >= before + 2


def test_reload_applies_an_edited_upstream_file(nginx_factory, static_site_factory):
    old = static_site_factory({"index.html": "old"})
    new = static_site_factory({"index.html": "new"})
    nginx = nginx_factory([old.address])
    assert http_get(nginx.url) == (200, "old")

    nginx.upstream_conf.write_text(upstream_block(nginx.upstream, [f"{new.address} weight=2"]))
    nginx.reload()

    assert http_get(nginx.url) == (200, "new")
    assert http_get(nginx.status_url)[0] == 200
