"""Real answers of the trace API, on a store with spans, match static/openapi.json."""

from __future__ import annotations

import json

from tests.traces.trace_builder import checkout, span, store_spans, trace_id
from tests.web.test_openapi import OPENAPI_FILE, assert_matches


def test_trace_answers_match_the_documented_schemas(app, qd, make_token):
    document = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    orphan = span(2, 7, parent=6, service="payments", attributes={"list": [1, "a"], "n": 1.5},
                  events=({"name": "retry", "time_ns": 1, "attributes": {"k": "v"}},))  # fmt: skip
    store_spans(qd.store.engine, checkout(1) + [orphan])
    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token()}"}
    for url in (
        "/api/v1/traces",
        "/api/v1/traces?service=payments&limit=1",
        "/api/v1/traces?error=x",
    ):
        assert_matches(document, "/api/v1/traces", client.get(url, headers=auth))
    for n in (1, 2, 3):
        response = client.get(f"/api/v1/traces/{trace_id(n)}", headers=auth)
        assert response.status_code == (404 if n == 3 else 200)
        assert_matches(document, "/api/v1/traces/{trace_id}", response)
