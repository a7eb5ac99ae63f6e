"""What the real OpenTelemetry SDK exports over OTLP is found by the search and shown whole."""

from __future__ import annotations

import json
import urllib.request

from tests.otlp.test_sdk_export import call_chain, provider


def get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


def test_a_call_chain_sent_by_the_sdk_is_searchable_by_its_tags_and_shown_whole(
    live_server, make_token
):
    endpoint = f"{live_server.url}/v1/traces"
    providers = [provider(s, endpoint) for s in ("gateway", "orders", "payments")]
    call_chain(*providers)
    for tracer_provider in providers:
        assert tracer_provider.force_flush(10_000)
        tracer_provider.shutdown()
    token = make_token()
    api = f"{live_server.url}/api/v1/traces"

    (found,) = get_json(f"{api}?service=payments&error=true&tag=amount:12.5", token)["traces"]
    assert (found["root_service"], found["root_operation"]) == ("gateway", "GET /checkout")
    assert found["services"] == ["gateway", "orders", "payments"]
    assert found["span_count"] == 5 and found["error"] is True
    # A resource attribute, asked for without its "resource." prefix.
    resource = get_json(f"{api}?tag=service.instance.id:orders-1&operation=POST+/orders", token)
    assert [t["trace_id"] for t in resource["traces"]] == [found["trace_id"]]
    assert get_json(f"{api}?service=gateway&tag=amount:12.5", token)["traces"] == []

    detail = get_json(f"{api}/{found['trace_id']}", token)
    spans = {s["name"]: s for s in detail["spans"]}
    assert [s["depth"] for s in detail["spans"]] == [0, 1, 2, 3, 4]
    assert spans["POST /charge"]["parent_span_id"] == spans["call payments"]["span_id"]
    assert spans["POST /charge"]["events"][0]["name"] == "card declined"
    assert detail["critical_path"][0]["span_id"] == spans["GET /checkout"]["span_id"]
