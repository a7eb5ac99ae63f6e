"""A store that refuses writes never turns an authenticated read into a 500."""

from __future__ import annotations

from app.auth.accounts import create_token
from app.factory import create_app
from app.store import migrate
from tests.store.test_unrecorded_runs import refuse_writes


def test_a_token_whose_use_cannot_be_recorded_still_reads_the_api(
    request, make_qd, postgres_server
):
    url = postgres_server.create_database()
    migrate.upgrade(url)
    qd = make_qd(url)
    with qd.store.session() as db:
        token = create_token(db, "reader", "viewer")
    restore = refuse_writes(request, qd, url)
    try:
        client = create_app(qd=qd).test_client()
        # The first use of a token is recorded: here the write is refused, the read is not.
        response = client.get("/api/v1/sources", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "sources" in response.json
    finally:
        restore()
