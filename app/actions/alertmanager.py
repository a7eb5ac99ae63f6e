"""Silence a target's alerts while an action runs: Alertmanager API v2 silences.

Alertmanager API v2 (api/v2/openapi.yaml): `POST /api/v2/silences` with `matchers`, `startsAt`,
`endsAt`, `createdBy`, `comment` answers `{"silenceID"}`; `GET /api/v2/silences` lists them with
`status.state` active|pending|expired; `DELETE /api/v2/silence/{id}` expires one. A silence
step's target carries a tag that goes in the comment, so the step finds its own silence again
(for the read-back, and for the undo that expires it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from app.actions.steps import Step, StepFailed

LIVE_STATES = ("active", "pending")


class AlertmanagerAdapter:
    """The `[alertmanager]` section's server: create and expire silences."""

    kind = "alertmanager"

    def __init__(self, url: str, timeout_s: float = 5.0, name: str = "alertmanager") -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = requests.Session()

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self._http.request(
                method, f"{self.url}{path}", timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise StepFailed(
                f"alertmanager: cannot reach {self.url}: {type(exc).__name__}"
            ) from None
        if response.status_code >= 300:
            raise StepFailed(
                f"alertmanager: {method} {path} answered HTTP {response.status_code}: "
                f"{response.text.strip()[:300]}"
            )
        return response

    def _find(self, target: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            silences = self._call("GET", "/api/v2/silences").json()
        except ValueError:
            raise StepFailed("alertmanager: GET /api/v2/silences answered no JSON") from None
        for silence in silences if isinstance(silences, list) else []:
            state = (silence.get("status") or {}).get("state")
            if target["tag"] in (silence.get("comment") or "") and state in LIVE_STATES:
                return silence
        return None

    def read(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """Return {"silenced": bool, "silence_id"} of the step's own silence."""
        found = self._find(target)
        return {"silenced": found is not None, "silence_id": found["id"] if found else None}

    def describe(self, target: Mapping[str, Any], change: Mapping[str, Any]) -> str:
        """Say the silence created (with its matchers) or expired."""
        if not change["silenced"]:
            return (
                f"alertmanager: DELETE {self.url}/api/v2/silence/<id> (expire the silence "
                f"{matcher_text(target['matchers'])} tagged {target['tag']})"
            )
        return (
            f"alertmanager: POST {self.url}/api/v2/silences {matcher_text(target['matchers'])} "
            f"until {target['ends_at']}"
        )

    def apply(
        self,
        target: Mapping[str, Any],
        change: Mapping[str, Any],
        before: Mapping[str, Any] | None = None,
    ) -> str:
        """Create the silence, or expire it."""
        if change["silenced"]:
            body = {
                "matchers": target["matchers"],
                "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "endsAt": target["ends_at"],
                "createdBy": target["created_by"],
                "comment": f"{target['comment']} [{target['tag']}]",
            }
            answer = self._call("POST", "/api/v2/silences", json=body).json()
            return f"silence {answer.get('silenceID')} until {target['ends_at']}"
        found = self._find(target)
        if found is None:
            return "no live silence left to expire"
        self._call("DELETE", f"/api/v2/silence/{quote(found['id'], safe='')}")
        return f"silence {found['id']} expired"

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()


def matcher_text(matchers: list[Mapping[str, Any]]) -> str:
    """Render matchers the way amtool shows them: {service="orders",instance="..."}."""
    parts = []
    for m in matchers:
        if m.get("isEqual", True):
            op = "=~" if m["isRegex"] else "="
        else:
            op = "!~" if m["isRegex"] else "!="
        parts.append(f'{m["name"]}{op}"{m["value"]}"')
    return "{" + ",".join(parts) + "}"


def silence_step(
    adapter: AlertmanagerAdapter,
    matchers: list[dict[str, Any]],
    ends_at: str,
    created_by: str,
    comment: str,
    tag: str,
) -> Step:
    """The plan step that silences `matchers` until `ends_at` (its undo expires the silence)."""
    target = {
        "matchers": matchers,
        "ends_at": ends_at,
        "created_by": created_by,
        "comment": comment,
        "tag": tag,
    }
    change = {"silenced": True}
    return Step(adapter.name, adapter.kind, target, change, adapter.describe(target, change))


def equal_matcher(name: str, value: str) -> dict[str, Any]:
    """An `name="value"` matcher of API v2."""
    return {"name": name, "value": value, "isRegex": False, "isEqual": True}
