"""Signed-in test clients on an actions fleet's app, and reading its pages."""

from __future__ import annotations

import re
import time

from app.auth.accounts import create_user
from app.factory import create_app
from tests.conftest import PASSWORD, csrf_token_from, sign_in


class Pages:
    """The fleet's app with one signed-in client per role."""

    def __init__(self, fleet) -> None:
        self.fleet = fleet
        self.app = create_app(qd=fleet.qd)
        self.clients = {}
        with fleet.qd.store.session() as db:
            for role in ("viewer", "operator", "admin"):
                create_user(db, f"{role}-user", role, PASSWORD)
        for role in ("viewer", "operator", "admin"):
            client = self.app.test_client()
            assert sign_in(client, f"{role}-user").status_code == 302
            self.clients[role] = client

    def get(self, path: str, role: str = "operator", **headers):
        return self.clients[role].get(path, headers=headers)

    def post(self, path: str, data: dict, role: str = "operator", **headers):
        return self.clients[role].post(path, data=data, headers=headers)

    def confirm_form(self, query: str, role: str = "operator") -> dict:
        """Open the confirmation page and return its form's fields (hidden ones filled in)."""
        page = self.get(f"/actions/confirm?{query}", role)
        assert page.status_code == 200, page.get_data(as_text=True)
        html = page.get_data(as_text=True)
        form = html[html.index('action="/actions/run"') :]
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
        fields["csrf_token"] = csrf_token_from(html)
        return fields

    def wait_finished(self, entry_id: str, timeout: float = 30.0) -> dict:
        """Wait until the audit says the action ended; return its entry."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get("/api/v1/audit?limit=100", "viewer").get_json()
            entry = next(e for e in body["entries"] if e["id"] == entry_id)
            if entry["status"] != "running" or time.monotonic() > deadline:
                return entry
            time.sleep(0.1)
