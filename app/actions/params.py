"""The parameters each action takes, each with its kind: what a form field becomes in `params`.

The API takes `params` as JSON and validates it (`parse_action_request`); a form or a query
string sends text, which this schema turns into the JSON the API would get, and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """One parameter: `text`, `whole` (a number), `bool`, `list` (of names) or `time` (RFC 3339).

    `needs` names a parameter without which this one means nothing, so a form that always
    sends this field (a number box beside a checkbox) leaves it out when that one is off.
    """

    kind: str
    needs: str | None = None


_INSTANCE_PARAMS = {
    "force": Param("bool"),
    "silence": Param("bool"),
    "wait_for_zero": Param("bool"),
    "wait_timeout_s": Param("whole", needs="wait_for_zero"),
}
PARAMETERS: dict[str, dict[str, Param]] = {
    "drain": _INSTANCE_PARAMS,
    "ready": _INSTANCE_PARAMS,
    "degrade": {
        "level": Param("text"),
        "features_off": Param("list"),
        "until": Param("time"),
        "duration_s": Param("whole"),
        "weight": Param("whole"),
        "silence": Param("bool"),
    },
    "restore": {"weight": Param("whole")},
    "canary": {
        "from": Param("text"),
        "to": Param("text"),
        "percent": Param("whole"),
        "abort": Param("bool"),
        "silence": Param("bool"),
    },
    "rollback": {"silence": Param("bool")},
}
