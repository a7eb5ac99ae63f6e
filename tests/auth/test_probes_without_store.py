"""/healthz and /metrics answer without the store, whatever credentials the request carries."""

from __future__ import annotations

import pytest

from app.config import AuthConfig
from app.factory import create_app
from tests.auth.conftest import cookie_of, signed_in_as
from tests.fixtures.processes import free_port


@pytest.fixture
def broken_store_url(qd, tmp_path) -> str:
    """A store of the test's backend that cannot be opened: a missing folder, or a dead port."""
    if qd.store.dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'q.db'}"
    return f"postgresql+psycopg://quarterdeck@127.0.0.1:{free_port()}/quarterdeck?connect_timeout=2"


def test_probes_and_metrics_never_touch_the_store(
    app, make_user, make_token, make_qd, broken_store_url
):
    make_user("alice", "viewer")
    cookie = cookie_of(signed_in_as(app, "alice"))
    token = make_token("ci", "viewer")
    auth = AuthConfig(header="X-Remote-User", trusted_proxies=("127.0.0.1",))
    broken = create_app(qd=make_qd(broken_store_url, auth=auth))
    client = broken.test_client()
    client.set_cookie("quarterdeck_session", cookie)
    for headers in ({}, {"Authorization": f"Bearer {token}"}, {"X-Remote-User": "alice"}):
        for path in ("/healthz", "/metrics"):
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (path, headers, response.get_data(as_text=True))
        ready = client.get("/readyz", headers=headers)
        assert ready.status_code == 503 and ready.json["status"] != "ok"
    # The store really is unreachable: a page that needs it fails.
    failing = client.get("/api/v1/services", headers={"Authorization": f"Bearer {token}"})
    assert failing.status_code >= 500
