"""With [alertmanager] configured, an action silences its target's alerts; its undo expires it.

Against a real Alertmanager (prometheus-alertmanager) from the fixtures.
"""

from __future__ import annotations

import json
from urllib.request import urlopen

import pytest

from app.actions.running import parse_action_request, submit_action, undo_action
from app.actions.sources import close_adapters
from app.config import AlertmanagerConfig


@pytest.fixture
def silenced(make_fleet, alertmanager_factory):
    alertmanager = alertmanager_factory()
    fleet = make_fleet(alertmanager=AlertmanagerConfig(url=alertmanager.url))
    adapters = fleet.adapters()
    yield fleet, adapters, alertmanager
    close_adapters(adapters)


def silences(alertmanager) -> list[dict]:
    with urlopen(f"{alertmanager.url}/api/v2/silences", timeout=5) as answer:
        return json.loads(answer.read())


def run(fleet, adapters, body):
    return submit_action(fleet.qd, adapters, "alice", parse_action_request(body))


def test_the_plan_shows_the_silence_and_its_matcher_first(silenced):
    fleet, adapters, alertmanager = silenced
    body = {"action": "degrade", "target": {"service": "web"}, "dry_run": True}

    plan = run(fleet, adapters, body)

    first = plan["plan"][0]
    assert first["source"] == "alertmanager"
    assert '{service="web"}' in first["change"]
    assert first["target"]["ends_at"] == plan["plan"][1]["set"]["value"]["until"]
    assert silences(alertmanager) == []


def test_a_degrade_silences_the_service_until_its_switch_ends_and_undo_expires_it(silenced):
    fleet, adapters, alertmanager = silenced
    body = {"action": "degrade", "target": {"service": "web"}, "reason": "slow"}

    result = run(fleet, adapters, body)

    assert result["status"] == "done", result["steps"]
    (silence,) = silences(alertmanager)
    assert silence["status"]["state"] == "active"
    assert silence["matchers"] == [
        {"name": "service", "value": "web", "isRegex": False, "isEqual": True}
    ]
    assert silence["createdBy"] == "alice"
    until = fleet.kv("quarterdeck/degrade/web")["until"]
    assert silence["endsAt"].startswith(until.removesuffix("Z")[:19])
    undo = undo_action(fleet.qd, adapters, "bob", result["id"])
    assert [s["source"] for s in undo["steps"]] == ["consul", "alertmanager"]
    assert undo["status"] == "done", undo["steps"]
    assert [s["status"]["state"] for s in silences(alertmanager)] == ["expired"]
    assert fleet.kv("quarterdeck/degrade/web") is None


def test_a_drain_silences_the_instance_by_its_address(silenced):
    fleet, adapters, alertmanager = silenced
    body = {"action": "drain", "target": {"service": "web", "instance": "web-1"}}

    result = run(fleet, adapters, body)

    assert result["status"] == "done", result["steps"]
    (silence,) = silences(alertmanager)
    values = {m["name"]: m["value"] for m in silence["matchers"]}
    assert values == {"service": "web", "instance": fleet.addresses["web-1"]}


def test_silence_false_plans_no_silence(silenced):
    fleet, adapters, alertmanager = silenced
    body = {"action": "degrade", "target": {"service": "web"}, "params": {"silence": False}}

    result = run(fleet, adapters, body)

    assert [s["source"] for s in result["steps"]] == ["consul"]
    assert silences(alertmanager) == []


def test_an_unreachable_alertmanager_stops_the_action_before_it_changes_anything(silenced):
    fleet, adapters, alertmanager = silenced
    alertmanager.process.stop()
    body = {"action": "degrade", "target": {"service": "web"}}

    result = run(fleet, adapters, body)

    assert result["status"] == "failed"
    assert [s["ok"] for s in result["steps"]] == [False, None]
    assert "cannot reach" in result["steps"][0]["detail"]
    assert fleet.kv("quarterdeck/degrade/web") is None
