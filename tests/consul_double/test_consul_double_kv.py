"""KV reads and writes behave as Consul's: 404 for missing keys, CAS, listing, raw values."""

from __future__ import annotations

import requests


def test_a_missing_key_reads_as_none_with_an_index(client):
    index, item = client.kv.get("quarterdeck/degrade/orders")

    assert item is None
    assert int(index) >= 1


def test_values_round_trip_as_bytes_with_their_indexes(client):
    assert client.kv.put("quarterdeck/degrade/orders", '{"level": "partial"}') is True

    index, item = client.kv.get("quarterdeck/degrade/orders")

    assert item["Value"] == b'{"level": "partial"}'
    assert item["CreateIndex"] == item["ModifyIndex"] == int(index)
    assert item["LockIndex"] == 0
    assert "Session" not in item


def test_cas_zero_creates_only_when_the_key_is_absent(client):
    assert client.kv.put("releases/orders", "v1", cas=0) is True
    assert client.kv.put("releases/orders", "v2", cas=0) is False

    assert client.kv.get("releases/orders")[1]["Value"] == b"v1"


def test_a_stale_cas_is_refused_and_leaves_the_value(client):
    client.kv.put("releases/orders", "v1")
    stale = client.kv.get("releases/orders")[1]["ModifyIndex"]
    client.kv.put("releases/orders", "v2")

    assert client.kv.put("releases/orders", "v3", cas=stale) is False
    current = client.kv.get("releases/orders")[1]
    assert current["Value"] == b"v2"
    assert client.kv.put("releases/orders", "v3", cas=current["ModifyIndex"]) is True


def test_cas_on_a_missing_key_other_than_zero_is_refused(client):
    assert client.kv.put("releases/none", "v1", cas=12345) is False


def test_putting_the_same_value_does_not_advance_the_modify_index(client):
    client.kv.put("k", "same")
    before = client.kv.get("k")[1]["ModifyIndex"]

    assert client.kv.put("k", "same") is True

    assert client.kv.get("k")[1]["ModifyIndex"] == before


def test_delete_with_cas_honours_the_modify_index(client):
    client.kv.put("k", "v")
    index = client.kv.get("k")[1]["ModifyIndex"]

    assert client.kv.delete("k", cas=index - 1) is False
    assert client.kv.delete("k", cas=index) is True
    assert client.kv.get("k")[1] is None


def test_recurse_and_keys_list_a_prefix(client):
    for key in ("app/a", "app/b/x", "app/b/y", "apple", "other"):
        client.kv.put(key, key)

    _, items = client.kv.get("app/", recurse=True)
    _, keys = client.kv.get("app/", keys=True, separator="/")
    _, nothing = client.kv.get("nothing/", recurse=True)

    assert [item["Key"] for item in items] == ["app/a", "app/b/x", "app/b/y"]
    assert keys == ["app/a", "app/b/"]
    assert nothing is None


def test_recursive_delete_removes_the_whole_prefix(client):
    for key in ("app/a", "app/b", "apple"):
        client.kv.put(key, "v")

    client.kv.delete("app/", recurse=True)

    assert client.kv.get("", keys=True)[1] == ["apple"]


def test_raw_returns_the_bare_value(double):
    double.kv_put("motd", "hello")

    response = requests.get(f"{double.url}/v1/kv/motd?raw", timeout=5)

    assert response.status_code == 200
    assert response.content == b"hello"
    assert response.headers["Content-Type"] == "text/plain"


def test_conflicting_flags_are_a_bad_request(double):
    response = requests.put(f"{double.url}/v1/kv/k?cas=0&acquire=x", data=b"v", timeout=5)

    assert response.status_code == 400
    assert response.text.startswith("Conflicting flags")
