"""Sessions hold KV locks; destroy, failed checks and TTL expiry release them as Consul does."""

from __future__ import annotations

import time

import pytest
import requests
from consul.exceptions import ConsulException, NotFound


def test_a_session_acquires_a_free_key_and_blocks_a_second_holder(client):
    first = client.session.create(name="leader-a")
    second = client.session.create(name="leader-b")

    assert client.kv.put("locks/leader", "a", acquire=first) is True
    assert client.kv.put("locks/leader", "b", acquire=second) is False

    item = client.kv.get("locks/leader")[1]
    assert item["Session"] == first
    assert item["LockIndex"] == 1
    assert item["Value"] == b"a"


def test_release_frees_the_lock_for_another_session_at_once(client):
    first = client.session.create()
    second = client.session.create()
    client.kv.put("locks/leader", "a", acquire=first)

    assert client.kv.put("locks/leader", "a", release=second) is False
    assert client.kv.put("locks/leader", "a", release=first) is True

    assert "Session" not in client.kv.get("locks/leader")[1]
    assert client.kv.put("locks/leader", "b", acquire=second) is True
    assert client.kv.get("locks/leader")[1]["LockIndex"] == 2


def test_destroying_a_session_releases_its_locks_under_lock_delay(client):
    holder = client.session.create(lock_delay=15)
    other = client.session.create()
    client.kv.put("locks/leader", "a", acquire=holder)

    assert client.session.destroy(holder) is True

    assert "Session" not in client.kv.get("locks/leader")[1]
    assert client.session.info(holder)[1] is None
    # Consul refuses to re-grant a lock during the dead holder's lock-delay.
    assert client.kv.put("locks/leader", "b", acquire=other) is False


def test_a_delete_behaviour_session_deletes_its_keys_when_destroyed(client):
    holder = client.session.create(behavior="delete")
    client.kv.put("ephemeral/worker-1", "alive", acquire=holder)

    client.session.destroy(holder)

    assert client.kv.get("ephemeral/worker-1")[1] is None


def test_a_critical_serf_check_invalidates_the_nodes_sessions(client, fleet, double):
    holder = client.session.create(node="node-a", lock_delay=0)
    client.kv.put("locks/leader", "node-a", acquire=holder)

    double.set_check("serfHealth", "critical", "Agent not live or unreachable", node="node-a")

    assert client.session.list()[1] == []
    assert "Session" not in client.kv.get("locks/leader")[1]


def test_a_session_cannot_start_on_a_node_whose_check_is_critical(client, fleet, double):
    double.set_check("serfHealth", "critical", "down", node="node-b")

    with pytest.raises(ConsulException, match="Check 'serfHealth' is in critical state"):
        client.session.create(node="node-b")


def test_an_unrenewed_ttl_session_expires_after_twice_its_ttl(client, double):
    holder = double.create_session(ttl_s=0.2, lock_delay_s=0)
    client.kv.put("locks/leader", "a", acquire=holder)
    index = client.kv.get("locks/leader")[0]

    started = time.monotonic()
    index, item = client.kv.get("locks/leader", index=index, wait="30s")

    # Not before its TTL; and the expiry, not the 30 s wait, woke the query (generous bound).
    assert 0.3 < time.monotonic() - started < 10
    assert "Session" not in item
    assert client.session.info(holder)[1] is None


def test_renewing_keeps_the_session_and_an_unknown_one_is_not_found(client):
    session = client.session.create(ttl=10)

    assert client.session.renew(session)["ID"] == session
    assert client.session.info(session)[1]["TTL"] == "10s"
    with pytest.raises(NotFound):
        client.session.renew("00000000-0000-0000-0000-000000000000")


def test_a_ttl_below_ten_seconds_is_refused(double):
    response = requests.put(f"{double.url}/v1/session/create", json={"TTL": "5s"}, timeout=5)

    assert response.status_code == 400
    assert "must be between [10s=24h0m0s]" in response.text


def test_acquiring_with_an_unknown_session_is_a_server_error(client):
    with pytest.raises(ConsulException, match="invalid session"):
        client.kv.put("locks/leader", "a", acquire="00000000-0000-0000-0000-000000000000")


def test_session_info_lists_node_checks_and_behaviour(client):
    session = client.session.create(name="deployer", behavior="delete", ttl=30)

    info = client.session.info(session)[1]

    assert info["Name"] == "deployer"
    assert info["Node"] == "consul-server-1"
    assert info["Behavior"] == "delete"
    assert info["NodeChecks"] == ["serfHealth"]
    assert info["LockDelay"] == 15_000_000_000


def test_a_malformed_session_body_is_a_bad_request(double):
    response = requests.put(f"{double.url}/v1/session/create", data=b"{nope", timeout=5)

    assert response.status_code == 400
    assert response.text.startswith("Request decode failed")
