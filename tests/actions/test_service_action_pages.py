"""The service page's "Act on this service" card: degrade, restore, canary and rollback through
the same plan → confirm → result → undo pages as a drain, their parameters read from the form
and judged by the API's own validation."""

from __future__ import annotations

import html as html_lib
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from werkzeug.datastructures import MultiDict

from app.actions.running import parse_action_request
from app.config import ActionsConfig
from app.models import Release, SpanRedMinute
from app.models.span_red import BUCKET_COLUMNS
from app.views.action_pages import form_params
from tests.actions.pages import Pages
from tests.conftest import csrf_token_from

DEGRADE_KEY = "quarterdeck/degrade/web"
RELEASES_KEY = "quarterdeck/releases/web"


@pytest.fixture
def pages(make_fleet) -> Pages:
    """web-1 runs v1, web-2 runs v2, behind HAProxy `edge` and nginx `push`."""
    return Pages(make_fleet(versions=("v1", "v2")))


def run_confirmed(pages: Pages, query: dict, form: dict | None = None, **extra) -> dict:
    """Confirm the planned action with the typed name and return its finished audit entry."""
    form = form or pages.confirm_form(urlencode(query))
    posted = pages.post("/actions/run", {**form, "confirm_name": "web", **extra})
    assert posted.status_code == 303, posted.get_data(as_text=True)
    return pages.wait_finished(posted.headers["Location"].rsplit("/", 1)[1])


def undo(pages: Pages, entry_id: str) -> dict:
    page = pages.get(f"/actions/{entry_id}/undo")
    assert page.status_code == 200, page.get_data(as_text=True)
    token = csrf_token_from(page.get_data(as_text=True))
    undone = pages.post(f"/actions/{entry_id}/undo", {"csrf_token": token})
    assert undone.status_code == 303, undone.get_data(as_text=True)
    return pages.wait_finished(undone.headers["Location"].rsplit("/", 1)[1])


def test_form_fields_become_the_api_params_by_the_actions_parameter_schema():
    degrade = MultiDict(
        [("features_off", "reviews, recs"), ("duration_s", "600"), ("level", " partial "),
         ("until", ""), ("silence", "0"), ("silence", "1"), ("colour", "red")]
    )  # fmt: skip
    drain = MultiDict([("wait_timeout_s", "120"), ("force", "on")])
    canary = MultiDict([("from", "v1"), ("to", "v2"), ("percent", "ten")])

    assert form_params("degrade", degrade) == {
        "features_off": ["reviews", "recs"], "duration_s": 600, "level": "partial",
        "silence": True,
    }  # fmt: skip
    assert form_params("drain", drain) == {"force": True}  # no wait: its timeout means nothing
    assert form_params("canary", canary)["percent"] == "ten"  # the API names what is wrong


def test_an_aborts_parsed_params_parse_again_to_themselves():
    body = {"action": "canary", "target": {"service": "web"},
            "params": {"from": "v1", "to": "v2", "abort": True}}  # fmt: skip
    parsed = parse_action_request(body).params

    assert parse_action_request({**body, "params": parsed}).params == parsed == {
        "from": "v1", "to": "v2", "abort": True, "percent": 0,
    }  # fmt: skip


def test_an_operator_gets_the_service_actions_and_a_viewer_only_why_not(pages):
    operator = pages.get("/services/web").get_data(as_text=True)
    viewer = pages.get("/services/web", "viewer").get_data(as_text=True)

    degrade = operator[operator.index('data-service-action="degrade"') :]
    assert degrade.startswith('data-service-action="degrade"')
    assert 'hx-get="/actions/plan"' in degrade.split("</form>")[0]
    assert 'name="features_off"' in degrade and 'name="duration_s"' in degrade
    canary = operator[operator.index('data-service-action="canary"') :].split("</form>")[0]
    assert '<option value="v1" selected>' in canary and '<option value="v2" selected>' in canary
    assert "data-not-degraded" in operator
    assert "data-actions-locked" in viewer and "for operators and admins" in viewer
    assert "data-service-action" not in viewer and "/actions/plan" not in viewer


def test_degrade_from_the_form_plan_confirm_result_and_undo(pages):
    fleet = pages.fleet
    query = {"action": "degrade", "service": "web", "level": "partial",
             "features_off": "reviews, recs", "duration_s": "600"}  # fmt: skip

    plan = pages.get(f"/actions/plan?{urlencode(query)}")

    text = plan.get_data(as_text=True)
    assert plan.status_code == 200, text
    assert 'data-summary="degrade"' in text and "level <code>partial</code>" in text
    assert f"/v1/kv/{DEGRADE_KEY}?cas=" in text  # the exact write, with what the key holds now
    assert "data-versions" in text and "data-serving" in text  # the blast radius
    assert fleet.kv(DEGRADE_KEY) is None
    form = pages.confirm_form(urlencode(query))
    planned_until = form["until"]
    assert "duration_s" not in form  # the run writes the until the plan showed
    without_name = pages.post("/actions/run", {**form, "reason": "slow db"})
    assert without_name.status_code == 422
    assert 'data-refused="confirm_name"' in without_name.get_data(as_text=True)
    assert fleet.kv(DEGRADE_KEY) is None

    entry = run_confirmed(pages, query, form, reason="slow db")

    assert entry["status"] == "done", entry["steps"]
    switch = fleet.kv(DEGRADE_KEY)
    assert (switch["level"], switch["features_off"]) == ("partial", ["recs", "reviews"])
    assert (switch["until"], switch["reason"], switch["by"]) == (
        planned_until,
        "slow db",
        "operator-user",
    )
    result = pages.get(f"/actions/{entry['id']}").get_data(as_text=True)
    assert "Done: all 1 step ran and read back as asked." in result and "data-undo" in result
    service = pages.get("/services/web").get_data(as_text=True)
    assert "data-degraded" in service and 'data-service-action="restore"' in service

    undone = undo(pages, entry["id"])

    assert undone["status"] == "done", undone["steps"]
    assert fleet.kv(DEGRADE_KEY) is None
    assert "data-not-degraded" in pages.get("/services/web").get_data(as_text=True)


def test_a_canary_step_from_the_form_moves_the_weights_it_was_given(pages):
    fleet = pages.fleet
    query = {"action": "canary", "service": "web", "from": "v1", "to": "v2", "percent": "10"}

    plan = pages.get(f"/actions/plan?{urlencode(query)}").get_data(as_text=True)

    assert "Gives <code>v2</code> 10 % of the requests" in plan
    assert "set server web/s2 state ready" in plan and "weight 1" in plan
    entry = run_confirmed(pages, query)
    assert entry["status"] == "done", entry["steps"]
    assert entry["params"] == {"from": "v1", "to": "v2", "percent": 10, "abort": False}
    assert (fleet.haproxy_stat("s1")["weight"], fleet.haproxy_stat("s2")["weight"]) == ("9", "1")
    fleet.collect()
    service = pages.get("/services/web").get_data(as_text=True)
    assert re.search(r"<code>v2</code> takes <strong>10 %</strong>", service), service
    assert 'data-service-action="canary-abort"' in service

    aborted = run_confirmed(pages, {"action": "canary", "service": "web", "from": "v1",
                                    "to": "v2", "abort": "1"})  # fmt: skip

    assert aborted["status"] == "done", aborted["steps"]
    assert fleet.haproxy_stat("s2")["weight"] == "0"


def worse_release(pages: Pages) -> None:
    """v2 active after v1 in the releases key, and v2's errors 8 % against v1's 1 %."""
    fleet = pages.fleet
    fleet.consul.kv_put(RELEASES_KEY, json.dumps({"active": "v2", "previous": "v1"}))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with fleet.qd.store.session(write=True) as db:
        for version, hours, role in (("v1", 2, "previous"), ("v2", 1, "active")):
            db.add(
                Release(
                    service="web", version=version, started_at=now - timedelta(hours=hours),
                    last_seen_at=now, seen_in="kv,catalog", by="", kv_role=role, instances=1,
                )
            )  # fmt: skip
        for m in range(120):
            db.add(
                SpanRedMinute(
                    minute_at=now - timedelta(minutes=120 - m), source="web", target="",
                    count=100, errors=1 if m < 60 else 8, duration_sum_ms=0,
                    duration_max_ms=50,
                    **{**dict.fromkeys(BUCKET_COLUMNS, 0), BUCKET_COLUMNS[7]: 100},
                )
            )  # fmt: skip


def test_rollback_from_the_releases_part_plans_confirms_and_moves_the_release(pages):
    fleet = pages.fleet
    worse_release(pages)
    service = pages.get("/services/web").get_data(as_text=True)
    releases = service[service.index('id="releases"') :]
    form = releases[releases.index("data-rollback") :].split("</form>")[0]
    assert 'hx-get="/actions/plan"' in form and 'value="rollback"' in form
    reason = html_lib.unescape(re.search(r'name="reason"[^>]*value="([^"]*)"', form).group(1))
    assert reason == "v2 is worse than v1 in error ratio"
    query = {"action": "rollback", "service": "web", "reason": reason}

    plan = pages.get(f"/actions/plan?{urlencode(query)}").get_data(as_text=True)

    assert "from <code>v2</code> back to <code>v1</code>" in plan  # the release, from the key
    confirm = pages.get(f"/actions/confirm?{urlencode(query)}").get_data(as_text=True)
    assert f">{reason}</textarea>" in confirm
    entry = run_confirmed(pages, query, reason=reason)
    assert entry["status"] == "done", entry["steps"]
    assert entry["reason"] == reason
    assert fleet.haproxy_status("s2").startswith("DRAIN")
    releases_key = fleet.kv(RELEASES_KEY)
    assert (releases_key["active"], releases_key["previous"]) == ("v1", "v2")


def test_a_bad_parameter_comes_back_in_its_form_naming_the_field_and_changes_nothing(pages):
    fleet = pages.fleet
    bad = {"action": "canary", "service": "web", "from": "v1", "to": "v2", "percent": "150"}

    refused = pages.get(f"/actions/plan?{urlencode(bad)}")

    text = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "params.percent must be a whole number 0-100" in text
    field = text[text.index('data-param="percent"') :].split("</div>")[0]
    assert 'aria-invalid="true"' in field and 'value="150"' in field
    assert 'data-param-error="percent"' in field
    # The same bad value posted straight to the run, CSRF and all, is refused the same way.
    form = pages.confirm_form(urlencode({**bad, "percent": "10"}))
    posted = pages.post("/actions/run", {**form, "percent": "150", "confirm_name": "web"})
    assert posted.status_code == 422
    assert 'data-param-error="percent"' in posted.get_data(as_text=True)
    until = pages.get("/actions/plan?action=degrade&service=web&until=tomorrow")
    assert until.status_code == 422
    assert 'data-param-error="until"' in until.get_data(as_text=True)
    assert fleet.haproxy_stat("s2")["weight"] == "1" and fleet.kv(DEGRADE_KEY) is None
    assert pages.get("/api/v1/audit", "viewer").get_json()["total"] == 0


def test_a_viewer_is_refused_the_service_actions_plan_and_run(pages):
    query = urlencode({"action": "degrade", "service": "web"})
    form = pages.confirm_form(query)  # an operator's form, sent by a viewer with its own token
    token = csrf_token_from(pages.get("/actions", "viewer").get_data(as_text=True))

    assert pages.get(f"/actions/plan?{query}", "viewer").status_code == 403
    assert pages.get(f"/actions/confirm?{query}", "viewer").status_code == 403
    posted = pages.post("/actions/run", {**form, "csrf_token": token, "confirm_name": "web"},
                        "viewer")  # fmt: skip
    assert posted.status_code == 403
    assert pages.fleet.kv(DEGRADE_KEY) is None


def test_a_service_action_without_its_csrf_token_is_refused_and_changes_nothing(pages):
    form = pages.confirm_form(urlencode({"action": "degrade", "service": "web"}))
    del form["csrf_token"]

    refused = pages.post("/actions/run", {**form, "confirm_name": "web"})

    assert refused.status_code == 400
    assert pages.fleet.kv(DEGRADE_KEY) is None
    assert pages.get("/api/v1/audit", "viewer").get_json()["total"] == 0


def test_with_approval_required_a_degrade_from_the_form_says_it_awaits_a_second_operator(
    make_fleet,
):
    pages = Pages(make_fleet(actions=ActionsConfig(require_approval=True)))

    entry = run_confirmed(pages, {"action": "degrade", "service": "web"})

    assert entry["status"] == "awaiting_approval"
    result = pages.get(f"/actions/{entry['id']}").get_data(as_text=True)
    assert "Awaiting a second operator's approval: nothing has changed yet." in result
    assert f"quarterdeck action approve {entry['id']}" in result
    assert pages.fleet.kv(DEGRADE_KEY) is None


def test_restore_from_the_card_shows_the_switch_now_and_deletes_it(pages):
    fleet = pages.fleet
    run_confirmed(pages, {"action": "degrade", "service": "web", "features_off": "reviews"})
    service = pages.get("/services/web").get_data(as_text=True)
    restore = service[service.index('data-service-action="restore"') :].split("</form>")[0]
    assert 'value="restore"' in restore and 'hx-get="/actions/plan"' in restore

    plan = pages.get("/actions/plan?action=restore&service=web").get_data(as_text=True)

    assert "Deletes the degrade switch of <strong>web</strong>" in plan
    assert f"DELETE {fleet.consul.url}/v1/kv/{DEGRADE_KEY}?cas=" in plan
    assert "&#39;features_off&#39;: [&#39;reviews&#39;]" in plan  # what the key holds now
    entry = run_confirmed(pages, {"action": "restore", "service": "web"})
    assert entry["status"] == "done", entry["steps"]
    assert fleet.kv(DEGRADE_KEY) is None
    assert "data-not-degraded" in pages.get("/services/web").get_data(as_text=True)
