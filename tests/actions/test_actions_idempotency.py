"""Quarterdeck's own actions hold their `Idempotency-Key` through `app.idempotency`.

With `[redis]` the fleet's reference guard holds them (events on the stream, collected for the
Idempotency page); without it the store's `idempotency_keys` table does. The audit row under
them keeps a key from ever running a second action.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import update

from app.auth.accounts import create_token
from app.config import RedisConfig
from app.factory import create_app
from app.models import IdempotencyKeyRow
from app.runbooks.book import parse_runbooks
from tests.actions.pages import Pages
from tests.fixtures.processes import free_port

DRAIN = {"action": "drain", "target": {"service": "web", "instance": "web-1"}, "reason": "patch"}
PATCH = """
runbooks:
  patch:
    steps:
      - action: drain
"""


class Api:
    """An operator's and a viewer's bearer tokens on an app of the fleet's context."""

    def __init__(self, qd) -> None:
        self.app = create_app(qd=qd)
        with qd.store.session() as db:
            self.tokens = {role: create_token(db, f"{role}-token", role)
                           for role in ("viewer", "operator")}  # fmt: skip

    def post(self, path, body, key=None):
        headers = {"Authorization": f"Bearer {self.tokens['operator']}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.app.test_client().post(path, json=body, headers=headers)

    def get(self, path):
        headers = {"Authorization": f"Bearer {self.tokens['viewer']}"}
        return self.app.test_client().get(path, headers=headers).get_json()

    def audit_total(self) -> int:
        return self.get("/api/v1/audit")["total"]


@pytest.fixture(params=["redis", "store"])
def keyed(request, make_fleet):
    """The fleet with `[redis]` on the test's Redis, or with none (keys in the store)."""
    sections = {}
    if request.param == "redis":
        sections["redis"] = RedisConfig(url=request.getfixturevalue("redis_url"))
    fleet = make_fleet(**sections)
    fleet.qd.config = fleet.qd.config.replace(runbook_book=parse_runbooks(PATCH, "rb.yaml"))
    return fleet, Api(fleet.qd), request.param


def conflicts(api: Api) -> list[str]:
    """The kinds of Quarterdeck's own conflicts the Idempotency page knows, oldest first."""
    body = api.get("/api/v1/idempotency/conflicts?service=quarterdeck")
    return [c["kind"] for c in reversed(body["conflicts"])]


def test_an_action_sent_twice_with_a_key_runs_once_and_the_replay_is_its_answer(keyed):
    fleet, api, backend = keyed

    first = api.post("/api/v1/actions", DRAIN, "k-1")
    again = api.post("/api/v1/actions", DRAIN, '"k-1"')  # the same key as an RFC 8941 string

    assert first.status_code == again.status_code == 200, first.get_json()
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert api.audit_total() == 1
    assert fleet.haproxy_status("s1") == "DRAIN"
    if backend == "redis":
        with redis.Redis.from_url(fleet.qd.config.redis.url) as r:
            [(_, fields)] = r.xrange(fleet.qd.config.redis.stream)
            assert (fields[b"service"], fields[b"kind"]) == (b"quarterdeck", b"duplicate_completed")
            assert r.keys("idem:quarterdeck:*")


def test_the_same_key_with_another_body_is_422_and_a_payload_mismatch_on_the_page(keyed):
    fleet, api, _ = keyed
    api.post("/api/v1/actions", DRAIN, "k-2")
    api.post("/api/v1/actions", DRAIN, "k-2")

    other = api.post("/api/v1/actions", {**DRAIN, "reason": "other"}, "k-2")

    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert api.audit_total() == 1
    fleet.collect()  # with [redis], the collector reads the guard's events off the stream
    assert conflicts(api) == ["duplicate_completed", "payload_mismatch"]


@pytest.mark.parametrize("header", ['"unterminated', "two words", "k" * 201, "ключ"])
def test_a_malformed_key_is_400_and_nothing_runs(keyed, header):
    fleet, api, _ = keyed

    refused = api.post("/api/v1/actions", DRAIN, header)

    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert api.audit_total() == 0
    assert fleet.haproxy_status("s1") == "UP"


def test_a_runbook_run_and_an_undo_sent_twice_run_once(keyed):
    fleet, api, _ = keyed
    run = {"target": "web/web-1", "reason": "patch"}

    first = api.post("/api/v1/runbooks/patch/run", run, "rb-1")
    again = api.post("/api/v1/runbooks/patch/run", run, "rb-1")
    undo = api.post(first.get_json()["undo_url"], {}, "undo-1")
    undo_again = api.post(first.get_json()["undo_url"], {}, "undo-1")

    assert first.status_code == again.status_code == 200, first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert undo.status_code == undo_again.status_code == 200, undo.get_json()
    assert undo_again.get_json()["id"] == undo.get_json()["id"]
    assert undo_again.headers["Idempotent-Replayed"] == "true"
    assert api.audit_total() == 2
    assert fleet.haproxy_status("s1") == "UP"


def test_a_request_refused_before_it_ran_releases_its_key_for_the_retry(keyed):
    fleet, api, _ = keyed
    drained = api.post("/api/v1/actions", DRAIN).get_json()
    fleet.collect()
    last = {**DRAIN, "target": {"service": "web", "instance": "web-2"}}

    refused = api.post("/api/v1/actions", last, "k-3")
    api.post(drained["undo_url"], {})
    fleet.collect()
    retried = api.post("/api/v1/actions", last, "k-3")

    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "last_healthy_instance"
    assert retried.status_code == 200, retried.get_json()
    assert "Idempotent-Replayed" not in retried.headers
    assert fleet.haproxy_status("s2") == "DRAIN"


@pytest.mark.parametrize("keyed", ["store"], indirect=True)
def test_a_key_whose_hold_lapsed_is_answered_from_the_audit_and_never_runs_twice(keyed):
    fleet, api, _ = keyed
    first = api.post("/api/v1/actions", DRAIN, "k-4").get_json()
    with fleet.qd.store.session(write=True) as db:  # the key's day is over (or its holder died)
        db.execute(update(IdempotencyKeyRow).values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))

    again = api.post("/api/v1/actions", DRAIN, "k-4")
    other = api.post("/api/v1/actions", {"action": "ready", "target": DRAIN["target"]}, "k-4")

    assert again.status_code == 200 and again.get_json()["id"] == first["id"]
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert api.audit_total() == 1


@pytest.fixture
def unreachable(make_fleet, make_qd):
    """Return a factory of an Api whose `[redis]` names a port nothing listens on."""
    fleet = make_fleet()

    def build(fail_open: bool) -> Api:
        dead = RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", fail_open=fail_open)
        config = fleet.qd.config
        qd = make_qd(consul=config.consul, haproxy=config.haproxy, nginx=config.nginx, redis=dead)
        return Api(qd)

    return fleet, build


def test_with_redis_unreachable_a_keyed_action_fails_closed_with_503(unreachable):
    fleet, build = unreachable
    api = build(fail_open=False)

    refused = api.post("/api/v1/actions", DRAIN, "k-5")
    unkeyed = api.post("/api/v1/actions", DRAIN)

    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "idempotency_unavailable"
    assert refused.headers["Retry-After"] == "1"
    assert unkeyed.status_code == 200  # a request without a key never needs Redis
    assert api.audit_total() == 1


def test_with_fail_open_a_keyed_action_runs_and_its_repeat_is_answered_from_the_audit(unreachable):
    fleet, build = unreachable
    api = build(fail_open=True)

    first = api.post("/api/v1/actions", DRAIN, "k-6")
    again = api.post("/api/v1/actions", DRAIN, "k-6")

    assert first.status_code == again.status_code == 200, first.get_json()
    assert again.get_json()["id"] == first.get_json()["id"]
    assert api.audit_total() == 1
    assert fleet.haproxy_status("s1") == "DRAIN"


@pytest.mark.parametrize("keyed", ["redis"], indirect=True)
def test_a_confirmation_sent_twice_goes_through_the_guard_and_runs_once(keyed):
    fleet, api, _ = keyed
    pages = Pages(fleet)
    form = pages.confirm_form("action=drain&service=web&instance=web-1")

    first = pages.post("/actions/run", form)
    second = pages.post("/actions/run", form)

    assert first.status_code == second.status_code == 303
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    pages.wait_finished(first.headers["Location"].rsplit("/", 1)[1])
    assert api.audit_total() == 1
    fleet.collect()
    assert conflicts(api) == ["duplicate_completed"]
