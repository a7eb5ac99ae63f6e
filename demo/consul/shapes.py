"""The JSON shapes Consul's catalog, health and agent endpoints answer with (OSS, no namespaces)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from demo.consul.catalog import CONSUL_VERSION, Check, Node, Service

JSON = dict[str, Any]
_AGENT_META = {"consul-network-segment": "", "consul-version": CONSUL_VERSION}


def node_json(node: Node, datacenter: str) -> JSON:
    """A node as catalog and health endpoints render it."""
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": datacenter,
        "TaggedAddresses": dict(node.tagged_addresses)
        if node.tagged_addresses is not None
        else {
            "lan": node.address,
            "lan_ipv4": node.address,
            "wan": node.address,
            "wan_ipv4": node.address,
        },
        # An agent adds its own meta; an external node has only what was registered.
        "Meta": {**(_AGENT_META if node.agent else {}), **node.meta},
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }


def service_json(service: Service) -> JSON:
    """A service instance in Consul's NodeService shape (health entries, catalog/node)."""
    body: JSON = {"Kind": service.kind} if service.kind else {}
    body.update(
        {
            "ID": service.id,
            "Service": service.name,
            "Tags": list(service.tags),
            "Address": service.address,
        }
    )
    tagged = _service_tagged_addresses(service)
    if tagged:
        body["TaggedAddresses"] = tagged
    body.update(
        {
            "Meta": dict(service.meta),
            "Port": service.port,
            "Weights": dict(service.weights),
            "EnableTagOverride": service.enable_tag_override,
            "Proxy": _proxy_json(service.proxy),
            "Connect": copy.deepcopy(service.connect or {}),
            "CreateIndex": service.create_index,
            "ModifyIndex": service.modify_index,
        }
    )
    return body


def catalog_service_json(service: Service, node: Node, datacenter: str) -> JSON:
    """A service instance in the flat shape of /v1/catalog/service/<name>."""
    node_body = node_json(node, datacenter)
    body: JSON = {
        "ID": node_body["ID"],
        "Node": node_body["Node"],
        "Address": node_body["Address"],
        "Datacenter": datacenter,
        "TaggedAddresses": node_body["TaggedAddresses"],
        "NodeMeta": node_body["Meta"],
        "ServiceKind": service.kind,
        "ServiceID": service.id,
        "ServiceName": service.name,
        "ServiceTags": list(service.tags),
        "ServiceAddress": service.address,
        "ServiceWeights": dict(service.weights),
        "ServiceMeta": dict(service.meta),
        "ServicePort": service.port,
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": service.enable_tag_override,
        "ServiceProxy": _proxy_json(service.proxy),
        "ServiceConnect": copy.deepcopy(service.connect or {}),
        "CreateIndex": service.create_index,
        "ModifyIndex": service.modify_index,
    }
    tagged = _service_tagged_addresses(service)
    if tagged:
        body["ServiceTaggedAddresses"] = tagged
    return body


def check_json(check: Check, service: Service | None) -> JSON:
    """A health check as every health endpoint renders it (ServiceTags from its service)."""
    return {
        "Node": check.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(service.tags) if service else [],
        "Type": check.check_type,
        "Interval": check.interval,
        "Timeout": check.timeout,
        "ExposedPort": 0,
        "Definition": copy.deepcopy(check.definition),
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    }


def agent_service_json(service: Service, datacenter: str) -> JSON:
    """A service as /v1/agent/services lists it: no indexes, Proxy only on proxies."""
    body = service_json(service)
    for key in ("CreateIndex", "ModifyIndex", "Connect"):
        body.pop(key)
    if service.kind != "connect-proxy":
        body.pop("Proxy")
    body["Datacenter"] = datacenter
    return body


def _service_tagged_addresses(service: Service) -> JSON:
    if service.tagged_addresses is not None:
        return copy.deepcopy(service.tagged_addresses)
    # Consul fills lan_ipv4/wan_ipv4 from an explicit service address.
    if not service.address:
        return {}
    entry = {"Address": service.address, "Port": service.port}
    return {"lan_ipv4": dict(entry), "wan_ipv4": dict(entry)}


def _proxy_json(proxy: Mapping[str, Any] | None) -> JSON:
    body: JSON = {"Mode": "", "MeshGateway": {}, "Expose": {}}
    if not proxy:
        return body
    extra = dict(copy.deepcopy(proxy))
    upstreams = extra.pop("Upstreams", None)
    body.update(extra)
    if upstreams:
        body["Upstreams"] = [
            {
                "DestinationType": "service",
                "DestinationName": "",
                "Datacenter": "",
                "LocalBindPort": 0,
                "MeshGateway": {},
                **upstream,
            }
            for upstream in upstreams
        ]
    return body
