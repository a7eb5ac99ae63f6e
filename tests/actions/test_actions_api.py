"""POST /api/v1/actions, its undo and GET /api/v1/audit: roles, Idempotency-Key, one at a time."""

from __future__ import annotations

import json
import threading

import pytest

from app.auth.accounts import create_token
from app.factory import create_app
from tests.web.test_openapi import OPENAPI_FILE, schema_errors

DOCUMENT = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))


def assert_documented(path: str, method: str, response) -> None:
    """Check a real answer against what static/openapi.json says `method path` returns."""
    responses = DOCUMENT["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, f"{method} {path}: {response.status_code}"
    schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
    assert schema_errors(response.get_json(), schema, DOCUMENT) == []


DRAIN = {"action": "drain", "target": {"service": "web", "instance": "web-1"}, "reason": "patch"}


@pytest.fixture
def api(fleet):
    app = create_app(qd=fleet.qd)
    tokens = {}
    with fleet.qd.store.session() as db:
        for role in ("viewer", "operator"):
            tokens[role] = create_token(db, f"{role}-token", role)

    class Api:
        @staticmethod
        def post(path, body=None, role="operator", **headers):
            headers["Authorization"] = f"Bearer {tokens[role]}"
            return app.test_client().post(path, json=body, headers=headers)

        @staticmethod
        def get(path, role="viewer"):
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            return app.test_client().get(path, headers=headers)

    return Api


def test_a_viewer_cannot_act_but_can_read_the_audit(api, fleet):
    refused = api.post("/api/v1/actions", DRAIN, role="viewer")

    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    assert_documented("/api/v1/actions", "post", refused)
    assert fleet.haproxy_status("s1") == "UP"
    assert api.get("/api/v1/audit").get_json() == {"entries": [], "total": 0}


def test_an_operator_drains_and_undoes_and_the_audit_shows_both(api, fleet):
    done = api.post("/api/v1/actions", DRAIN)
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["status"] == "done"
    assert_documented("/api/v1/actions", "post", done)
    assert fleet.haproxy_status("s1") == "DRAIN"

    undo = api.post(body["undo_url"])

    assert undo.status_code == 200
    assert undo.get_json()["undo_of"] == body["id"]
    assert_documented("/api/v1/actions/{entry_id}/undo", "post", undo)
    assert_documented("/api/v1/audit", "get", api.get("/api/v1/audit"))
    again = api.post(body["undo_url"])
    assert again.status_code == 409
    assert_documented("/api/v1/actions/{entry_id}/undo", "post", again)
    assert fleet.haproxy_status("s1") == "UP"
    entries = api.get("/api/v1/audit").get_json()["entries"]
    assert [(e["action"], e["actor"], e["status"]) for e in entries] == [
        ("undo drain", "token:operator-token", "done"),
        ("drain", "token:operator-token", "done"),
    ]
    assert "undo_url" not in entries[1] and entries[1]["undone"] is True
    assert entries[1]["reason"] == "patch"


def test_a_dry_run_returns_the_plan_and_writes_no_audit(api, fleet):
    planned = api.post("/api/v1/actions", {**DRAIN, "dry_run": True}).get_json()

    assert planned["status"] == "planned" and len(planned["plan"]) == 3
    assert_documented(
        "/api/v1/actions", "post", api.post("/api/v1/actions", {**DRAIN, "dry_run": True})
    )
    assert api.get("/api/v1/audit").get_json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "explode", "target": {"service": "web"}}, "action must be one of"),
        ({"action": "drain", "target": {"service": "web"}}, "target.instance is needed"),
        ({**DRAIN, "params": {"force": "yes"}}, "params.force"),
        ({**DRAIN, "params": {"speed": 1}}, "params.speed"),
        ({**DRAIN, "dry_run": "no"}, "dry_run"),
    ],
)
def test_an_invalid_body_is_422_naming_the_field(api, body, message):
    answer = api.post("/api/v1/actions", body)

    assert answer.status_code == 422
    assert message in answer.get_json()["error"]["message"]
    assert_documented("/api/v1/actions", "post", answer)


def test_fifty_submissions_with_one_idempotency_key_run_once(api, fleet):
    answers = []
    start = threading.Barrier(50)

    def submit():
        start.wait()
        answers.append(api.post("/api/v1/actions", DRAIN, **{"Idempotency-Key": "k-1"}))

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ok = [a.get_json() for a in answers if a.status_code == 200]
    busy = [a.get_json() for a in answers if a.status_code == 409]
    assert len(ok) + len(busy) == 50
    assert ok and len({body["id"] for body in ok}) == 1
    assert {b["error"]["code"] for b in busy} <= {"request_in_progress"}
    assert api.get("/api/v1/audit").get_json()["total"] == 1
    repeat = api.post("/api/v1/actions", DRAIN, **{"Idempotency-Key": "k-1"})
    assert repeat.status_code == 200 and repeat.get_json()["id"] == ok[0]["id"]


def test_a_key_sent_again_with_another_request_is_refused(api):
    api.post("/api/v1/actions", DRAIN, **{"Idempotency-Key": "k-2"})

    other = api.post("/api/v1/actions", {**DRAIN, "reason": "other"}, **{"Idempotency-Key": "k-2"})

    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"


def test_concurrent_actions_on_one_target_never_interleave(api, fleet):
    answers = []
    start = threading.Barrier(8)

    def submit(action):
        body = {**DRAIN, "action": action, "params": {"force": True}} if action == "drain" else {
            "action": "ready", "target": DRAIN["target"]}  # fmt: skip
        start.wait()
        answers.append(api.post("/api/v1/actions", body))

    threads = [threading.Thread(target=submit, args=(a,)) for a in ["drain", "ready"] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 409} and 200 in codes
    assert all(
        a.get_json()["error"]["code"] == "target_busy" for a in answers if a.status_code == 409
    )
    entries = api.get("/api/v1/audit").get_json()["entries"]
    spans = sorted((e["at"], e["finished_at"]) for e in entries)
    assert len(spans) == codes.count(200)
    for (_, first_end), (second_start, _) in zip(spans, spans[1:], strict=False):
        assert first_end <= second_start, spans
