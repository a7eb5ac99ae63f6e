"""The main bar: every section reachable, the rarer ones grouped under one entry that marks the
page you are on, and the admin-only section only for admins."""

from __future__ import annotations

import re

from app.factory import NAV

GROUP = re.compile(r'<details data-nav-group>\s*<summary class="([^"]*)">Operate')


def _links(html: str) -> list[str]:
    nav = html.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'<a href="([^"]+)"', nav)


def test_every_section_is_in_the_bar_and_the_group_marks_the_page_you_are_on(signed_in):
    client = signed_in("viewer")
    html = client.get("/runbooks").get_data(as_text=True)
    assert _links(html) == [
        "/", "/services", "/map", "/traces", "/push", "/idempotency",
        "/actions", "/runbooks", "/rules", "/reports", "/sources",
    ]  # fmt: skip
    assert GROUP.search(html).group(1) == "nav-group__summary is-active"
    assert '<a href="/runbooks" aria-current="page">Runbooks</a>' in html
    other = client.get("/services").get_data(as_text=True)
    assert GROUP.search(other).group(1) == "nav-group__summary"
    assert '<a href="/services" aria-current="page">Services</a>' in other


def test_only_an_admin_has_users_in_the_bar(signed_in):
    assert "/admin/users" not in _links(signed_in("operator").get("/").get_data(as_text=True))
    assert _links(signed_in("admin").get("/").get_data(as_text=True))[-1] == "/admin/users"


def test_the_groups_hold_entries_the_bar_would_otherwise_list():
    groups = [entries for label, entries in NAV if isinstance(entries, tuple)]
    assert groups and all(len(entries) >= 2 for entries in groups)
