"""Change Consul: an instance's maintenance mode (agent endpoint) and KV keys with CAS.

Consul HTTP API, agent/service: `PUT /v1/agent/service/maintenance/<service_id>?enable=&reason=`
is answered by the agent the service is registered with (another agent says 404), and it
registers the critical check `_service_maintenance:<id>` with the reason in `Notes`. KV:
`PUT /v1/kv/<key>?cas=<ModifyIndex>` answers `true` or `false` (cas=0: only if absent).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import consul
import requests

from app.actions.steps import StepFailed
from collectors.base import SourceUnavailable
from collectors.consul_api import ConsulReader

MAINTENANCE_CHECK_PREFIX = "_service_maintenance:"
TIMEOUT_S = 10


def _client(url: str, token: str | None, datacenter: str | None, verify) -> consul.Consul:
    parts = urlsplit(url)
    client = consul.Consul(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (443 if parts.scheme == "https" else 8500),
        scheme=parts.scheme or "http",
        dc=datacenter,
        verify=verify,
        connections_timeout=TIMEOUT_S,
    )
    # py-consul lets CONSUL_HTTP_TOKEN override the token argument; the config wins.
    client.token = token
    return client


class ConsulAdapter:
    """The `[consul]` section's cluster: maintenance of instances, KV writes with CAS."""

    kind = "consul"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        datacenter: str | None = None,
        verify: bool | str = True,
        agent_url: str = "",
        name: str = "consul",
    ) -> None:
        self.name = name
        self.url = url
        self.agent_url = agent_url
        self._token, self._dc, self._verify = token, datacenter, verify
        parts = urlsplit(url)
        self._reader = ConsulReader(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (443 if parts.scheme == "https" else 8500),
            scheme=parts.scheme or "http",
            token=token,
            datacenter=datacenter,
            verify=verify,
        )

    @classmethod
    def from_config(cls, config) -> ConsulAdapter:
        """Build the adapter of the [consul] section, the way the collector reads it."""
        verify: bool | str = (
            config.ca_file if config.verify_tls and config.ca_file else config.verify_tls
        )
        return cls(
            config.url,
            token=os.environ.get(config.token_env) if config.token_env else None,
            datacenter=config.datacenter or None,
            verify=verify,
            agent_url=config.agent_url,
        )

    def agent_for(self, node: str) -> str:
        """Return the URL of the agent on `node` (`agent_url` with {node}), else `url`."""
        return (
            self.agent_url.replace("{node}", quote(node, safe="")) if self.agent_url else self.url
        )

    def read(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """Return {"maintenance": bool} of an instance, or {"value", "index"} of a KV key."""
        if "key" in target:
            return self.read_kv(target["key"])
        try:
            answer = self._reader.health_service(target["service"])
        except SourceUnavailable as exc:
            raise StepFailed(f"consul: {exc.reason}") from None
        for entry in answer.data or []:
            service, node = entry.get("Service") or {}, entry.get("Node") or {}
            if service.get("ID") == target["service_id"] and node.get("Node") == target["node"]:
                check_id = MAINTENANCE_CHECK_PREFIX + target["service_id"]
                checks = entry.get("Checks") or []
                return {"maintenance": any(c.get("CheckID") == check_id for c in checks)}
        raise StepFailed(
            f"consul: no instance {target['service_id']} of {target['service']} on node "
            f"{target['node']}"
        )

    def describe(self, target: Mapping[str, Any], change: Mapping[str, Any]) -> str:
        """Return the agent request (or the KV write) the change sends."""
        if "key" in target:
            key = quote(target["key"], safe="/")
            if change["value"] is None:
                return f"consul: DELETE {self.url}/v1/kv/{key}?cas=<ModifyIndex read just before>"
            body = json.dumps(change["value"], sort_keys=True)
            return f"consul: PUT {self.url}/v1/kv/{key}?cas=<ModifyIndex read just before> {body}"
        enable = "true" if change["maintenance"] else "false"
        reason = (
            f"&reason={quote(change.get('reason') or '', safe='')}" if change["maintenance"] else ""
        )
        return (
            f"consul: PUT {self.agent_for(target['node'])}/v1/agent/service/maintenance/"
            f"{quote(target['service_id'], safe='')}?enable={enable}{reason}"
        )

    def apply(
        self,
        target: Mapping[str, Any],
        change: Mapping[str, Any],
        before: Mapping[str, Any] | None = None,
    ) -> str:
        """Toggle maintenance on the instance's own agent (or write a KV key with CAS)."""
        if "key" in target:
            return self._apply_kv(target["key"], change["value"], before)
        agent = self.agent_for(target["node"])
        client = _client(agent, self._token, self._dc, self._verify)
        params = [("enable", "true" if change["maintenance"] else "false")]
        if change["maintenance"] and change.get("reason"):
            params.append(("reason", change["reason"]))
        path = f"/v1/agent/service/maintenance/{quote(target['service_id'], safe='')}"
        try:
            response = client.http.session.put(
                f"{agent}{path}",
                params=params,
                headers=client.prepare_headers(),
                timeout=TIMEOUT_S,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise StepFailed(
                f"consul: cannot reach the agent at {agent}: {type(exc).__name__}"
            ) from None
        finally:
            client.http.session.close()
        if response.status_code != 200:
            raise StepFailed(
                f"consul: agent {agent} answered HTTP {response.status_code}: "
                f"{response.text.strip()[:300]}"
            )
        return f"agent {agent}: maintenance {'on' if change['maintenance'] else 'off'}"

    def read_kv(self, key: str) -> dict[str, Any]:
        """Return {"value": the key's JSON (its text if not JSON, None if absent), "index"}."""
        client = _client(self.url, self._token, self._dc, self._verify)
        try:
            _, entry = client.kv.get(key)
        except (consul.ConsulException, requests.RequestException) as exc:
            raise StepFailed(f"consul: GET /v1/kv/{key}: {_consul_error(exc)}") from None
        finally:
            client.http.session.close()
        if entry is None:
            return {"value": None, "index": 0}
        raw = entry.get("Value") or b""
        text = raw.decode("utf-8", "replace")
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = text
        return {"value": value, "index": int(entry.get("ModifyIndex") or 0)}

    def list_kv(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        """Return (key, {"value", "index"}) of every key under a prefix."""
        client = _client(self.url, self._token, self._dc, self._verify)
        try:
            _, entries = client.kv.get(prefix, recurse=True)
        except (consul.ConsulException, requests.RequestException) as exc:
            raise StepFailed(f"consul: GET /v1/kv/{prefix}?recurse: {_consul_error(exc)}") from None
        finally:
            client.http.session.close()
        found = []
        for entry in entries or []:
            text = (entry.get("Value") or b"").decode("utf-8", "replace")
            try:
                value = json.loads(text) if text else None
            except ValueError:
                value = text
            found.append((entry["Key"], {"value": value, "index": int(entry["ModifyIndex"])}))
        return found

    def _apply_kv(self, key: str, value: Any, before: Mapping[str, Any] | None) -> str:
        # Consul KV: `?cas=<ModifyIndex>` writes only if nobody wrote since; 0 = only if absent.
        index = int((before or {}).get("index") or 0)
        client = _client(self.url, self._token, self._dc, self._verify)
        try:
            if value is None:
                done = bool(client.kv.delete(key, cas=index)) if index else True
                verb = "DELETE"
            else:
                body = json.dumps(value, sort_keys=True).encode()
                done = bool(client.kv.put(key, body, cas=index))
                verb = "PUT"
        except (consul.ConsulException, requests.RequestException) as exc:
            raise StepFailed(f"consul: /v1/kv/{key}?cas={index}: {_consul_error(exc)}") from None
        finally:
            client.http.session.close()
        if not done:
            raise StepFailed(
                f"consul: CAS conflict on {key}: another writer changed it after it was read at "
                f"ModifyIndex {index}; nothing was written"
            )
        return f"{verb} /v1/kv/{key}?cas={index}: true"

    def write_kv(self, key: str, value: bytes, cas: int) -> bool:
        """PUT a KV key only if its ModifyIndex is still `cas` (0: only if absent)."""
        client = _client(self.url, self._token, self._dc, self._verify)
        try:
            return bool(client.kv.put(key, value, cas=cas))
        except (consul.ConsulException, requests.RequestException) as exc:
            raise StepFailed(f"consul: PUT /v1/kv/{key}?cas={cas}: {exc}") from None
        finally:
            client.http.session.close()

    def close(self) -> None:
        """Close the reader's connections."""
        self._reader.close()


def _consul_error(exc: Exception) -> str:
    """Say what went wrong talking to Consul, without the request's headers."""
    if isinstance(exc, requests.RequestException):
        return f"cannot reach Consul: {type(exc).__name__}"
    text = str(exc).strip()
    return text[:300] or type(exc).__name__
