"""Quarterdeck's own API: `Idempotency-Key` makes a double submit run once (Redis or store)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import redis
from flask import Blueprint, jsonify, request
from sqlalchemy import select, update

from app.auth.access import require
from app.auth.accounts import create_token
from app.config import RedisConfig
from app.context import Quarterdeck
from app.factory import create_app
from app.idempotency import idempotent_request
from app.models import IdemEventRow, IdempotencyKeyRow
from tests.conftest import test_config


def _actions_blueprint(ran: list) -> Blueprint:
    """A state-changing endpoint shaped like issue 10's POST /api/v1/actions."""
    bp = Blueprint("test_actions", __name__, url_prefix="/api/v1/test")

    @bp.post("/actions")
    @require("operator")
    @idempotent_request
    def run_action():
        body = request.get_json()
        if body.get("slow"):
            time.sleep(0.8)
        if body.get("explode"):
            return jsonify({"error": {"code": "boom", "message": "adapter down"}}), 502
        ran.append(body)
        return jsonify({"id": str(len(ran)), "status": "done"}), 200, {"Location": "/a/1"}

    return bp


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def api(request, sqlite_url):
    """An app whose keys live in the store (SQLite, PostgreSQL) or in the test Redis."""
    sections, store_url = {}, sqlite_url
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        sections["redis"] = RedisConfig(url=url, stream="test:qd:events")
    elif request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        store_url = server.create_database(template=server.migrated_template())
    qd = Quarterdeck.from_config(test_config(store_url, **sections))
    ran: list = []
    app = create_app(qd=qd)
    app.register_blueprint(_actions_blueprint(ran))
    with qd.store.session() as db:
        operator = create_token(db, "ops", "operator")
        other = create_token(db, "ops2", "operator")
    yield app, ran, operator, other, request.param
    qd.feed.close()
    qd.store.dispose()
    if request.param == "postgresql":
        server.drop_database(store_url)


def _post(client, token, body, key=None):
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/api/v1/test/actions", json=body, headers=headers)


def test_a_double_submit_runs_once_and_replays_the_first_answer(api):
    app, ran, token, _, _ = api
    client = app.test_client()
    first = _post(client, token, {"action": "drain"}, '"k-1"')
    again = _post(client, token, {"action": "drain"}, '"k-1"')
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json() == {"id": "1", "status": "done"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == "/a/1"
    assert len(ran) == 1


def test_another_payload_with_the_same_key_is_422(api):
    app, ran, token, _, _ = api
    client = app.test_client()
    assert _post(client, token, {"action": "drain"}, "k-2").status_code == 200
    mismatch = _post(client, token, {"action": "ready"}, "k-2")
    assert mismatch.status_code == 422
    assert mismatch.get_json()["error"]["code"] == "idempotency_key_reused"
    assert len(ran) == 1


def test_the_same_key_while_the_first_runs_is_409(api):
    app, ran, token, _, _ = api
    outcomes = []
    slow = threading.Thread(
        target=lambda: outcomes.append(
            _post(app.test_client(), token, {"action": "drain", "slow": True}, "k-3").status_code
        )
    )
    slow.start()
    time.sleep(0.3)
    busy = _post(app.test_client(), token, {"action": "drain", "slow": True}, "k-3")
    slow.join()
    assert busy.status_code == 409
    assert busy.get_json()["error"]["code"] == "request_in_progress"
    assert outcomes == [200]
    assert len(ran) == 1


def test_keys_are_scoped_to_the_caller(api):
    app, ran, token, other, _ = api
    client = app.test_client()
    assert _post(client, token, {"action": "drain"}, "k-4").status_code == 200
    theirs = _post(client, other, {"action": "drain"}, "k-4")
    assert theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers
    assert len(ran) == 2


def test_a_failed_action_is_not_kept_and_a_malformed_key_is_400(api):
    app, ran, token, _, _ = api
    client = app.test_client()
    assert _post(client, token, {"explode": True}, "k-5").status_code == 502
    retry = _post(client, token, {"action": "drain"}, "k-5")  # released: runs, even reworded
    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry.headers
    assert len(ran) == 1
    bad = _post(client, token, {"action": "drain"}, '"unterminated')
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == "invalid_idempotency_key"


def test_without_the_header_each_request_runs(api):
    app, ran, token, _, _ = api
    client = app.test_client()
    _post(client, token, {"action": "drain"})
    _post(client, token, {"action": "drain"})
    assert len(ran) == 2


@pytest.mark.parametrize("api", ["redis"], indirect=True)
def test_redis_backed_keys_emit_events_on_the_configured_stream(api, request):
    app, ran, token, _, _ = api
    client = app.test_client()
    _post(client, token, {"action": "drain"}, "k-6")
    _post(client, token, {"action": "drain"}, "k-6")
    url = request.getfixturevalue("redis_url")
    with redis.Redis.from_url(url) as r:
        [(_, fields)] = r.xrange("test:qd:events")
        assert fields[b"kind"] == b"duplicate_completed"
        assert fields[b"service"] == b"quarterdeck"
        assert r.keys("idem:quarterdeck:*")


@pytest.mark.parametrize("api", ["sqlite", "postgresql"], indirect=True)
def test_store_held_keys_record_their_conflicts_for_the_idempotency_page(api):
    app, ran, token, _, _ = api
    client = app.test_client()
    _post(client, token, {"action": "drain"}, "k-7")
    _post(client, token, {"action": "drain"}, "k-7")  # replayed
    _post(client, token, {"action": "ready"}, "k-7")  # another payload
    body = client.get(
        "/api/v1/idempotency/conflicts?service=quarterdeck",
        headers={"Authorization": f"Bearer {token}"},
    ).get_json()
    found = sorted(c["kind"] for c in body["conflicts"])
    assert found == ["duplicate_completed", "payload_mismatch"]
    assert body["counts"]["duplicate_completed"] == body["counts"]["payload_mismatch"] == 1
    assert all(c["key"].endswith(":k-7") and c["instance"] for c in body["conflicts"])
    assert len({c["id"] for c in body["conflicts"]}) == 2
    page = client.get("/idempotency", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    assert "quarterdeck" in page.get_data(as_text=True)


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_a_store_held_key_that_lapsed_records_lock_expired_and_release_denied(api):
    app, _, _, _, _ = api
    qd = app.extensions["quarterdeck"]
    keys = app.extensions["quarterdeck_idempotency"]
    first = keys.acquire("scope", "k-8", "fp")
    with qd.store.session(write=True) as db:  # its hold lapses: a later request takes the key
        db.execute(update(IdempotencyKeyRow).values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
    second = keys.acquire("scope", "k-8", "fp")
    keys.complete(first, {"status": 200, "headers": [], "body_b64": ""})
    keys.release(first)
    keys.release(second)
    with qd.store.session() as db:
        rows = db.scalars(select(IdemEventRow).order_by(IdemEventRow.id)).all()
    assert [(r.kind, r.service, r.key) for r in rows] == [
        ("lock_expired", "quarterdeck", "scope:k-8"),
        ("release_denied", "quarterdeck", "scope:k-8"),
    ]
    assert rows[0].ttl_ms == 600_000 and rows[0].held_ms is not None
