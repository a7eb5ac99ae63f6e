"""The Actions & audit page: filters in the query string, paging, statuses said plainly."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from app.auth.accounts import create_user
from app.factory import create_app
from app.store.audit import add_entry, finish_entry
from tests.conftest import PASSWORD, sign_in

STEP = {"source": "edge", "kind": "haproxy", "target": {"backend": "web", "server": "s1"},
        "change": "haproxy edge: set server web/s1 state drain", "set": {"state": "drain"},
        "before": {"state": "ready", "weight": 1}, "read_error": None}  # fmt: skip


def result(ok, changed, detail):
    after = {"state": "drain" if changed else "ready"}
    return {**STEP, "ok": ok, "detail": detail, "changed": changed, "after": after}


@pytest.fixture
def audited(qd):
    """60 actions an hour apart: alice drains and readies, bob has a partial and a failed one."""
    now = qd.clock()
    with qd.store.session(write=True) as db:
        for n in range(60):
            actor, status = "alice", "done"
            if n == 5:
                actor, status = "bob", "partial"
            elif n == 6:
                actor, status = "bob", "failed"
            entry_id = f"{n:032x}"
            add_entry(db, id=entry_id, at=now - timedelta(hours=n), actor=actor,
                      action="drain" if n % 2 else "ready", target=f"web/web-{n % 3}",
                      reason=f"reason {n}", params={}, plan=[STEP], steps=[],
                      blast_radius={}, status="running")  # fmt: skip
            steps = {
                "done": [result(True, True, "applied and read back")],
                "partial": [
                    result(True, True, "applied and read back"),
                    {**result(False, False, "haproxy edge: socket closed"), "source": "push"},
                    {
                        **result(None, False, "not attempted: an earlier step failed"),
                        "source": "consul",
                    },
                ],  # fmt: skip
                "failed": [result(False, False, "haproxy edge: connection refused")],
            }[status]
            ended_at = now - timedelta(hours=n) + timedelta(seconds=1)
            finish_entry(db, entry_id, steps, status, ended_at)
        create_user(db, "vic", "viewer", PASSWORD)
    client = create_app(qd=qd).test_client()
    assert sign_in(client, "vic").status_code == 302
    return client


def ids_on(html: str) -> list[str]:
    import re

    return re.findall(r'<li class="audit-entry[^"]*" data-entry="([0-9a-f]+)"', html)


def test_the_page_shows_fifty_newest_first_and_pages_on(audited):
    first = audited.get("/actions").get_data(as_text=True)

    assert ids_on(first) == [f"{n:032x}" for n in range(50)]
    assert "60 actions" in first
    older = audited.get("/actions?offset=50").get_data(as_text=True)
    assert ids_on(older) == [f"{n:032x}" for n in range(50, 60)]
    assert 'rel="prev" href="?"' in older and 'rel="next"' not in older


def test_filters_narrow_the_list_and_live_in_the_query_string(audited):
    page = audited.get("/actions?actor=bob").get_data(as_text=True)
    assert ids_on(page) == [f"{5:032x}", f"{6:032x}"]
    assert 'name="actor" value="bob"' in page
    # The action filter offers every kind the audit holds, runbook runs and rules' decisions too.
    for kind in ("drain", "undo drain", "runbook", "undo runbook", "rule"):
        assert f'<option value="{kind}"' in page, kind

    partial = audited.get("/actions?status=partial").get_data(as_text=True)
    assert ids_on(partial) == [f"{5:032x}"]
    assert ("Partly done: 1 of 3 steps ran, then step 2 (push) failed: haproxy edge: socket "
            "closed; 1 not attempted. What was done is still in place") in partial  # fmt: skip
    failed = audited.get("/actions?status=failed").get_data(as_text=True)
    assert "Failed: step 1 (edge): haproxy edge: connection refused. Nothing was changed." in failed

    narrowed = audited.get("/actions?action=drain&target=web/web-1&since=30h&until=3h")
    shown = ids_on(narrowed.get_data(as_text=True))
    assert shown and all(int(i, 16) % 2 == 1 and int(i, 16) % 3 == 1 for i in shown)
    assert all(3 < int(i, 16) <= 30 for i in shown)
    json_link = narrowed.get_data(as_text=True).split('class="btn btn--quiet" href="', 1)[1]
    query = parse_qs(urlsplit(json_link.split('"', 1)[0].replace("&amp;", "&")).query)
    assert query == {"action": ["drain"], "target": ["web/web-1"], "since": ["30h"],
                     "until": ["3h"]}  # fmt: skip
    api = audited.get("/api/v1/audit?action=drain&target=web/web-1&since=30h&until=3h")
    assert [e["id"] for e in api.get_json()["entries"]] == shown


@pytest.mark.parametrize(
    "query", ["status=exploded", "since=yesterday", "until=3 hours", "offset=-1", "offset=١"]
)
def test_a_bad_filter_is_a_400_that_names_it(audited, query):
    answer = audited.get(f"/actions?{query}")

    assert answer.status_code == 400
    assert query.split("=")[0] in answer.get_data(as_text=True)
