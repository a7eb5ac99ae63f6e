"""Service-wide actions wait for a second operator when configured; admins may break glass."""

from __future__ import annotations

import logging

import pytest

from app.auth.accounts import create_token
from app.config import ActionsConfig
from app.factory import create_app
from app.store.audit import get_entry
from tests.actions.test_actions_api import assert_documented

KEY = "quarterdeck/degrade/web"
DEGRADE = {
    "action": "degrade",
    "target": {"service": "web"},
    "params": {"features_off": ["reservations"]},
    "reason": "inventory is slow",
}


@pytest.fixture
def fleet(make_fleet):
    return make_fleet(actions=ActionsConfig(require_approval=True))


@pytest.fixture
def api(fleet):
    app = create_app(qd=fleet.qd)
    tokens = {}
    with fleet.qd.store.session() as db:
        for name, role in (("viewer", "viewer"), ("alice", "operator"), ("bob", "operator"),
                           ("root", "admin")):  # fmt: skip
            tokens[name] = create_token(db, name, role)

    def post(path, body=None, who="alice"):
        headers = {"Authorization": f"Bearer {tokens[who]}"}
        return app.test_client().post(path, json=body, headers=headers)

    return post


def test_a_service_action_waits_for_approval_and_changes_nothing(api, fleet):
    answer = api("/api/v1/actions", DEGRADE)

    assert answer.status_code == 202
    assert_documented("/api/v1/actions", "post", answer)
    body = answer.get_json()
    assert body["status"] == "awaiting_approval"
    assert body["approve_url"] == f"/api/v1/actions/{body['id']}/approve"
    assert body["plan"][0]["target"] == {"key": KEY}
    assert body["blast_radius"]["needs_approval"] is True
    assert fleet.kv(KEY) is None


def test_the_requester_cannot_approve_their_own_action(api, fleet):
    entry_id = api("/api/v1/actions", DEGRADE).get_json()["id"]

    refused = api(f"/api/v1/actions/{entry_id}/approve", who="alice")

    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "own_action"
    assert_documented("/api/v1/actions/{entry_id}/approve", "post", refused)
    assert fleet.kv(KEY) is None


def test_a_viewer_cannot_approve(api, fleet):
    entry_id = api("/api/v1/actions", DEGRADE).get_json()["id"]

    refused = api(f"/api/v1/actions/{entry_id}/approve", who="viewer")

    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    assert fleet.kv(KEY) is None


def test_a_second_operator_approves_and_the_action_runs_once(api, fleet):
    entry_id = api("/api/v1/actions", DEGRADE).get_json()["id"]

    approved = api(f"/api/v1/actions/{entry_id}/approve", who="bob")

    assert approved.status_code == 200, approved.get_json()
    assert_documented("/api/v1/actions/{entry_id}/approve", "post", approved)
    body = approved.get_json()
    assert body["id"] == entry_id
    assert body["status"] == "done"
    assert body["actor"] == "token:alice"
    assert body["approved_by"] == "token:bob"
    assert fleet.kv(KEY)["by"] == "token:alice"
    again = api(f"/api/v1/actions/{entry_id}/approve", who="root")
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "not_awaiting_approval"


def test_a_rejected_action_never_runs(api, fleet):
    entry_id = api("/api/v1/actions", DEGRADE).get_json()["id"]

    rejected = api(f"/api/v1/actions/{entry_id}/reject", who="bob")

    assert rejected.status_code == 200
    assert rejected.get_json()["status"] == "rejected"
    assert api(f"/api/v1/actions/{entry_id}/approve", who="root").status_code == 409
    assert fleet.kv(KEY) is None


def test_instance_actions_need_no_approval(api, fleet):
    drain = {"action": "drain", "target": {"service": "web", "instance": "web-1"}}

    answer = api("/api/v1/actions", drain)

    assert answer.status_code == 200
    assert answer.get_json()["status"] == "done"


def test_an_operator_cannot_break_glass(api, fleet):
    refused = api("/api/v1/actions", {**DEGRADE, "break_glass": True}, who="alice")

    assert refused.status_code == 403
    assert fleet.kv(KEY) is None


def test_breaking_glass_needs_a_reason(api, fleet):
    refused = api("/api/v1/actions", {**DEGRADE, "break_glass": True, "reason": ""}, who="root")

    assert refused.status_code == 422
    assert "reason" in refused.get_json()["error"]["message"]


def test_an_admin_breaks_glass_loudly(api, fleet, caplog):
    with caplog.at_level(logging.WARNING, logger="app.actions.running"):
        answer = api("/api/v1/actions", {**DEGRADE, "break_glass": True}, who="root")

    assert answer.status_code == 200
    body = answer.get_json()
    assert body["status"] == "done"
    assert body["break_glass"] is True
    assert fleet.kv(KEY) is not None
    assert any("BREAK GLASS" in r.getMessage() and "token:root" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    with fleet.qd.store.session() as db:
        assert get_entry(db, body["id"]).break_glass is True
