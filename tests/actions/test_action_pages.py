"""The action pages: buttons, plan → confirm → result → undo as plain form posts, the refusals."""

from __future__ import annotations

import time

import pytest

from app.store.span_red import LAG_NS, roll_up_spans
from app.store.traces import write_spans
from collectors.spans import SpanRecord
from tests.actions.pages import Pages
from tests.conftest import csrf_token_from
from tests.fixtures.processes import wait_for

PLAN = "action=drain&service=web&instance=web-1"


@pytest.fixture
def pages(fleet) -> Pages:
    return Pages(fleet)


def test_an_operator_sees_drain_buttons_on_the_service_page_and_a_viewer_sees_none(pages):
    operator = pages.get("/services/web").get_data(as_text=True)
    viewer = pages.get("/services/web", "viewer").get_data(as_text=True)

    assert 'href="/actions/plan?action=drain&amp;service=web&amp;instance=web-1"' in operator
    assert 'data-instance-actions="web-2"' in operator
    assert "data-instance-actions" not in viewer
    assert "/actions/plan" not in viewer


def test_the_plan_shows_each_steps_source_change_and_current_value_and_the_blast_radius(pages):
    page = pages.get(f"/actions/plan?{PLAN}")

    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert "set server web/s1 state drain" in html
    assert 'data-step-source="edge"' in html and 'data-step-source="push"' in html
    assert 'data-step-source="consul"' in html
    assert "state=ready" in html and "maintenance=False" in html
    assert "data-serving-after" in html and "web-2" in html
    assert "data-callers" in html
    assert pages.fleet.haproxy_status("s1") == "UP"


def test_plan_confirm_result_and_undo_as_plain_form_posts(pages):
    fleet = pages.fleet
    form = pages.confirm_form(PLAN)
    form["reason"] = "kernel patch"

    posted = pages.post("/actions/run", form)

    assert posted.status_code == 303, posted.get_data(as_text=True)
    result_url = posted.headers["Location"]
    entry_id = result_url.rsplit("/", 1)[1]
    entry = pages.wait_finished(entry_id)
    assert entry["status"] == "done", entry
    assert fleet.haproxy_status("s1") == "DRAIN"
    assert fleet.nginx_line("web-1").endswith("down;")
    assert fleet.maintenance("web-1")
    result = pages.get(result_url).get_data(as_text=True)
    assert 'data-action-status="done"' in result
    assert "Done: all 3 steps ran and read back as asked." in result
    assert "state=drain" in result  # the read-back

    undo_page = pages.get(f"/actions/{entry_id}/undo")
    undo_html = undo_page.get_data(as_text=True)
    assert undo_page.status_code == 200, undo_html
    assert "set server web/s1 state ready" in undo_html
    token = pages.confirm_form(PLAN)["csrf_token"]
    undone = pages.post(f"/actions/{entry_id}/undo", {"csrf_token": token, "reason": "done"})

    assert undone.status_code == 303, undone.get_data(as_text=True)
    undo_id = undone.headers["Location"].rsplit("/", 1)[1]
    assert pages.wait_finished(undo_id)["status"] == "done"
    assert fleet.haproxy_status("s1") == "UP"
    assert not fleet.maintenance("web-1")
    # nginx -s reload returns before the new workers take over: wait for them, as elsewhere.
    wait_for(lambda: fleet.answers_through_nginx(12) == {"web-1", "web-2"}, "nginx to use both", 10)


def test_a_viewer_is_refused_the_plan_the_confirmation_the_run_and_the_undo(pages):
    form = pages.confirm_form(PLAN)  # an operator's form, sent by a viewer
    done = pages.post("/actions/run", form)
    entry_id = done.headers["Location"].rsplit("/", 1)[1]
    pages.wait_finished(entry_id)

    assert pages.get(f"/actions/plan?{PLAN}", "viewer").status_code == 403
    assert pages.get(f"/actions/confirm?{PLAN}", "viewer").status_code == 403
    assert pages.get(f"/actions/{entry_id}/undo", "viewer").status_code == 403
    viewer_page = pages.get("/actions", "viewer").get_data(as_text=True)
    token = csrf_token_from(viewer_page)
    assert pages.post("/actions/run", {**form, "csrf_token": token}, "viewer").status_code == 403
    refused = pages.post(f"/actions/{entry_id}/undo", {"csrf_token": token}, "viewer")
    assert refused.status_code == 403
    assert pages.fleet.haproxy_status("s1") == "DRAIN"  # the viewer's undo did nothing
    assert entry_id in viewer_page and "data-undo" not in viewer_page  # reads, no button
    assert "data-undo" in pages.get("/actions").get_data(as_text=True)


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(pages):
    form = pages.confirm_form(PLAN)
    del form["csrf_token"]

    refused = pages.post("/actions/run", form)

    assert refused.status_code == 400
    assert pages.fleet.haproxy_status("s1") == "UP"
    assert pages.get("/api/v1/audit", "viewer").get_json()["total"] == 0


def test_a_confirmation_sent_twice_runs_once(pages):
    form = pages.confirm_form(PLAN)

    first = pages.post("/actions/run", form)
    pages.wait_finished(first.headers["Location"].rsplit("/", 1)[1])
    second = pages.post("/actions/run", form)

    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert pages.get("/api/v1/audit", "viewer").get_json()["total"] == 1


def test_the_last_healthy_instance_needs_force_and_the_typed_service_name(pages):
    fleet = pages.fleet
    first = pages.post("/actions/run", pages.confirm_form(PLAN))
    pages.wait_finished(first.headers["Location"].rsplit("/", 1)[1])
    fleet.collect()  # the store now knows web-1 is in maintenance
    last = "action=drain&service=web&instance=web-2"

    plan = pages.get(f"/actions/plan?{last}").get_data(as_text=True)
    assert "data-last-healthy" in plan and "is the last healthy instance of web" in plan
    form = pages.confirm_form(last)
    without_force = pages.post("/actions/run", {**form, "confirm_name": "web"})
    html = without_force.get_data(as_text=True)
    assert without_force.status_code == 409, html
    assert 'data-refused="last_healthy_instance"' in html and "data-force" in html
    without_name = pages.post("/actions/run", {**form, "force": "1"})
    assert without_name.status_code == 422
    assert 'data-refused="confirm_name"' in without_name.get_data(as_text=True)
    assert fleet.haproxy_status("s2") == "UP"

    forced = pages.post("/actions/run", {**form, "force": "1", "confirm_name": "web"})

    assert forced.status_code == 303
    assert pages.wait_finished(forced.headers["Location"].rsplit("/", 1)[1])["status"] == "done"
    assert fleet.haproxy_status("s2") == "DRAIN"


def test_htmx_gets_each_part_alone_and_the_run_answers_with_the_result_part(pages):
    plan = pages.get(f"/actions/plan?{PLAN}", **{"HX-Request": "true"}).get_data(as_text=True)
    assert plan.lstrip().startswith("<section") and "<html" not in plan
    form = pages.confirm_form(PLAN)

    result = pages.post("/actions/run", form, **{"HX-Request": "true"})

    html = result.get_data(as_text=True)
    assert result.status_code == 200 and "<html" not in html
    assert 'data-flow="result"' in html and 'data-live-topic="action:' in html


def test_text_from_the_fleet_and_the_reason_are_escaped_on_every_action_page(pages):
    fleet = pages.fleet
    hostile = '<img src=x onerror="alert(1)">'
    fleet.consul.register_service("node-1", f"web-{hostile}", "web", address="127.0.0.1", port=1)
    fleet.collect()
    form = pages.confirm_form(PLAN)
    form["reason"] = f"</textarea><script>alert(1)</script>{hostile}"
    entry_id = pages.post("/actions/run", form).headers["Location"].rsplit("/", 1)[1]
    pages.wait_finished(entry_id)

    bodies = [
        pages.get("/services/web").get_data(as_text=True),
        pages.get(f"/actions/plan?action=drain&service=web&instance=web-{hostile}").get_data(
            as_text=True
        ),
        pages.get(f"/actions/{entry_id}").get_data(as_text=True),
        pages.get("/actions").get_data(as_text=True),
    ]
    for body in bodies:
        assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in bodies[2]
    assert "&lt;img src=x" in bodies[0]


def test_the_plan_names_the_callers_from_the_map_with_their_rate(pages):
    qd = pages.fleet.qd
    start = int((time.time() - 120) * 1e9)
    spans = []
    for n in range(60):
        parent = SpanRecord(trace_id=f"{n + 1:032x}", span_id=f"{2 * n + 1:016x}",
                            parent_span_id="", service="shop", name="GET /web",
                            start_ns=start + n * 10**9, duration_ns=5_000_000, kind=2)  # fmt: skip
        child = SpanRecord(trace_id=parent.trace_id, span_id=f"{2 * n + 2:016x}",
                           parent_span_id=parent.span_id, service="web", name="handle",
                           start_ns=start + n * 10**9 + 1000, duration_ns=3_000_000,
                           kind=2)  # fmt: skip
        spans += (parent, child)
    with qd.store.engine.begin() as connection:
        write_spans(connection, spans)
    with qd.store.session(write=True) as db:
        roll_up_spans(db, qd.clock(), now_ns=time.time_ns() + LAG_NS)

    html = pages.get(f"/actions/plan?{PLAN}").get_data(as_text=True)
    planned = pages.clients["operator"].post(
        "/api/v1/actions",
        json={"action": "drain", "target": {"service": "web", "instance": "web-1"},
              "dry_run": True},
        headers={"X-CSRFToken": csrf_token_from(html)},
    ).get_json()  # fmt: skip

    assert 'data-caller="shop"' in html and "req/s" in html
    [caller] = planned["blast_radius"]["callers"]
    assert caller["service"] == "shop" and caller["rate_rps"] > 0
    assert caller["evidence"] == ["traces"]
