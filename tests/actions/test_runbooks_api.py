"""The runbook and rule APIs and pages: roles, Idempotency-Key, documented shapes, CSRF forms."""

# "Not drained" reads startswith("UP"): HAProxy shows "UP 1/2" while one of its own checks
# is slow on a busy machine, which says nothing about the action.

from __future__ import annotations

import re

import pytest

from app.auth.accounts import create_token
from app.config import RuleConfig
from app.factory import create_app
from app.rules.evaluation import evaluate_rules
from app.runbooks.book import parse_runbooks
from tests.actions.test_actions_api import assert_documented
from tests.actions.test_runbooks import EVACUATE
from tests.conftest import sign_in

RUN = "/api/v1/runbooks/evacuate/run"


@pytest.fixture
def api(fleet):
    fleet.qd.config = fleet.qd.config.replace(
        runbook_book=parse_runbooks(EVACUATE, "rb.yaml"),
        rules=(
            RuleConfig(
                name="crit", when="instance_critical_with_traffic", runbook="evacuate", for_s=0
            ),
        ),  # fmt: skip
    )
    app = create_app(qd=fleet.qd)
    tokens = {}
    with fleet.qd.store.session() as db:
        for role in ("viewer", "operator"):
            tokens[role] = create_token(db, f"{role}-token", role)

    class Api:
        client = app.test_client

        @staticmethod
        def post(path, body=None, role="operator", **headers):
            headers["Authorization"] = f"Bearer {tokens[role]}"
            return app.test_client().post(path, json=body, headers=headers)

        @staticmethod
        def get(path, role="viewer"):
            return app.test_client().get(path, headers={"Authorization": f"Bearer {tokens[role]}"})

    return Api


def test_a_viewer_lists_runbooks_but_cannot_run_one(api, fleet):
    listed = api.get("/api/v1/runbooks")
    refused = api.post(RUN, {"target": "web/web-1"}, role="viewer")

    assert listed.status_code == 200
    assert_documented("/api/v1/runbooks", "get", listed)
    assert [s["kind"] for s in listed.get_json()["runbooks"][0]["steps"]] == [
        "action", "action", "wait_for", "action", "check",
    ]  # fmt: skip
    assert refused.status_code == 403
    assert_documented("/api/v1/runbooks/{name}/run", "post", refused)
    assert fleet.haproxy_status("s1").startswith("UP")


def test_an_operator_plans_then_runs_once_per_idempotency_key(api, fleet):
    plan = api.post(RUN, {"target": {"service": "web", "instance": "web-1"}, "dry_run": True})
    assert plan.status_code == 200
    assert_documented("/api/v1/runbooks/{name}/run", "post", plan)
    assert plan.get_json()["status"] == "planned"

    first = api.post(RUN, {"target": "web/web-1", "reason": "patch"}, **{"Idempotency-Key": "k1"})
    again = api.post(RUN, {"target": "web/web-1", "reason": "patch"}, **{"Idempotency-Key": "k1"})
    other = api.post(RUN, {"target": "web/web-2", "reason": "patch"}, **{"Idempotency-Key": "k1"})

    assert first.status_code == 200, first.get_json()
    assert_documented("/api/v1/runbooks/{name}/run", "post", first)
    assert first.get_json()["status"] == "done"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert fleet.haproxy_status("s1") == "DRAIN"
    audit = api.get("/api/v1/audit").get_json()
    assert [e["action"] for e in audit["entries"]] == ["runbook"]
    assert_documented("/api/v1/audit", "get", api.get("/api/v1/audit"))


def test_bad_bodies_are_refused_naming_the_field(api):
    for body, needle in (
        ({"target": "web/web-1", "dry_run": "yes"}, "dry_run"),
        ({"target": "web/web-1", "colour": 1}, "colour"),
        ({"target": "web"}, "SERVICE/INSTANCE"),
    ):
        answer = api.post(RUN, body)
        assert answer.status_code == 422
        assert needle in answer.get_json()["error"]["message"]
    assert api.post("/api/v1/runbooks/nope/run", {"target": "web/web-1"}).status_code == 404


def test_rules_list_their_state_and_a_proposal_is_approved_over_the_api(api, fleet):
    fleet.consul.register_check("node-1", "service:web-1", "http", status="critical",
                                service_id="web-1")  # fmt: skip
    fleet.collect()
    evaluate_rules(fleet.qd)

    listed = api.get("/api/v1/rules")
    assert_documented("/api/v1/rules", "get", listed)
    body = listed.get_json()
    assert body["rules"][0]["state"] == "decided"
    proposal = body["proposals"][0]
    assert (proposal["target"], proposal["state"]) == ("web/web-1", "proposed")

    refused = api.post(f"/api/v1/rules/proposals/{proposal['id']}/approve", role="viewer")
    approved = api.post(f"/api/v1/rules/proposals/{proposal['id']}/approve")
    twice = api.post(f"/api/v1/rules/proposals/{proposal['id']}/dismiss")

    assert refused.status_code == 403
    assert approved.status_code == 200, approved.get_json()
    assert_documented("/api/v1/rules/proposals/{proposal_id}/approve", "post", approved)
    assert twice.status_code == 409
    assert fleet.haproxy_status("s1") == "DRAIN"
    replay = api.get("/api/v1/rules/replay?hours=24")
    assert_documented("/api/v1/rules/replay", "get", replay)
    assert api.get("/api/v1/rules/replay?hours=1x").status_code == 400


def _signed_in(api, fleet, make_user, role):
    client = api.client()
    sign_in(client, make_user(f"{role}-person", role))
    return client


def _csrf(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def test_the_runbooks_page_plans_confirms_and_runs_for_an_operator(api, fleet, make_user):
    client = _signed_in(api, fleet, make_user, "operator")
    page = client.get("/runbooks")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "evacuate" in text and "wait for <code>no_push_connections</code>" in text

    planned = client.post("/runbooks/evacuate/plan",
                          data={"target": "web/web-1", "csrf_token": _csrf(page)})  # fmt: skip
    assert planned.status_code == 200
    assert "Run evacuate on web/web-1" in planned.get_data(as_text=True)
    assert fleet.haproxy_status("s1").startswith("UP")

    ran = client.post("/runbooks/evacuate/run",
                      data={"target": "web/web-1", "csrf_token": _csrf(planned)})  # fmt: skip
    assert ran.status_code == 200
    assert "— done" in ran.get_data(as_text=True)
    assert fleet.haproxy_status("s1") == "DRAIN"
    no_csrf = client.post("/runbooks/evacuate/run", data={"target": "web/web-2"})
    assert no_csrf.status_code in (400, 403)
    assert fleet.haproxy_status("s2").startswith("UP")


def test_a_viewer_sees_runbooks_and_rules_without_forms_and_cannot_post(api, fleet, make_user):
    client = _signed_in(api, fleet, make_user, "viewer")
    page = client.get("/runbooks")
    rules = client.get("/rules")

    assert page.status_code == 200 and rules.status_code == 200
    assert "Plan</button>" not in page.get_data(as_text=True)
    assert "What the rules would have done" in rules.get_data(as_text=True)
    refused = client.post("/runbooks/evacuate/run", data={"target": "web/web-1",
                                                          "csrf_token": _csrf(page)})  # fmt: skip
    assert refused.status_code == 403
    assert fleet.haproxy_status("s1").startswith("UP")


def test_the_overview_shows_a_waiting_proposal_with_approve_for_operators(api, fleet, make_user):
    fleet.consul.register_check("node-1", "service:web-1", "http", status="critical",
                                service_id="web-1")  # fmt: skip
    fleet.collect()
    evaluate_rules(fleet.qd)
    client = _signed_in(api, fleet, make_user, "operator")

    text = client.get("/").get_data(as_text=True)

    assert "Rules propose" in text
    assert "web/web-1" in text and "Approve</button>" in text
    # Its details list what approving would change, row by row.
    plan = text[
        text.index("data-proposal-plan") : text.index("</ol>", text.index("data-proposal-plan"))
    ]
    assert "<strong>consul</strong>: consul: PUT" in plan and "maintenance/web-1" in plan
