"""ACL tokens, policies and the authorizer of the Consul double (Consul >= 1.13 semantics).

Follows Consul's ACL system (developer.hashicorp.com/consul/docs/security/acl/acl-rules):
rules per resource, an exact rule beats the longest matching `<resource>_prefix` rule, `write`
implies `read`, and what no rule matches falls to `acl.default_policy`. Several policies on one
token merge as acl/policy_merger.go does: deny beats write beats read beats list.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from demo.consul.protocol import HTTPError

# Resources that take per-name rules (`service "web"`, `service_prefix ""`), and scalar ones.
NAMED_RESOURCES = ("agent", "event", "key", "node", "query", "service", "session")
SCALAR_RESOURCES = ("acl", "keyring", "mesh", "operator", "peering")
LEVELS = ("deny", "list", "read", "write")
_GRANTS = {"list": ("list", "read", "write"), "read": ("read", "write"), "write": ("write",)}
# acl/policy_merger.go takesPrecedenceOver: the most restrictive of deny, then the widest grant.
_PRECEDENCE = {"deny": 4, "write": 3, "read": 2, "list": 1}
# structs.ACLTokenAnonymousID: the token Consul uses when a request names none.
ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"  # noqa: S105 - the well-known name, not a secret
GLOBAL_MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"


class PermissionDenied(HTTPError):
    """acl.PermissionDeniedError, answered as 403 with its Error() text."""

    def __init__(self, accessor_id: str, resource: str, access: str, name: str) -> None:
        # acl/errors.go PermissionDeniedError.Error()
        if accessor_id == ANONYMOUS_ACCESSOR_ID:
            message = "Permission denied: anonymous token"
        else:
            message = f"Permission denied: token with AccessorID '{accessor_id}'"
        message += f" lacks permission '{resource}:{access}'"
        if name:
            message += f' on "{name}"'
        if accessor_id == ANONYMOUS_ACCESSOR_ID:
            message += (
                ". The anonymous token is used implicitly when a request does not specify a token."
            )
        super().__init__(403, message)


@dataclass(frozen=True)
class Rules:
    """One policy's rules: exact and prefix levels per named resource, scalar levels."""

    exact: dict[str, dict[str, str]] = field(default_factory=dict)
    prefix: dict[str, dict[str, str]] = field(default_factory=dict)
    scalar: dict[str, str] = field(default_factory=dict)


def parse_rules(rules: Mapping[str, Any] | str) -> Rules:
    """Rules in Consul's JSON form, e.g. {"service_prefix": {"": {"policy": "read"}}}.

    A level may also be given bare ({"service": {"web": "write"}}); a JSON string is accepted
    as Consul's API accepts one. A wrong resource or level is a ValueError naming it.
    """
    if isinstance(rules, str):
        try:
            rules = json.loads(rules) if rules.strip() else {}
        except ValueError as error:
            raise ValueError(f"ACL rules are not valid JSON: {error}") from None
    if not isinstance(rules, Mapping):
        raise ValueError("ACL rules must be a JSON object")
    parsed = Rules()
    for key, value in rules.items():
        resource, is_prefix = (
            (key[: -len("_prefix")], True) if key.endswith("_prefix") else (key, False)
        )
        if resource in SCALAR_RESOURCES and not is_prefix:
            parsed.scalar[resource] = _level(key, value)
            continue
        if resource not in NAMED_RESOURCES:
            raise ValueError(f"unknown ACL rule resource {key!r}")
        if not isinstance(value, Mapping):
            raise ValueError(f"ACL rule {key!r} must map names to a policy")
        table = (parsed.prefix if is_prefix else parsed.exact).setdefault(resource, {})
        for name, level in value.items():
            table[str(name)] = _level(f"{key} {name!r}", level)
    return parsed


def _level(where: str, value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("policy", value.get("Policy"))
    if value not in LEVELS:
        raise ValueError(f"ACL rule {where}: policy must be one of {LEVELS}, not {value!r}")
    return value


def _merge(into: dict[str, str], name: str, level: str) -> None:
    current = into.get(name)
    if current is None or _PRECEDENCE[level] > _PRECEDENCE[current]:
        into[name] = level


@dataclass
class Policy:
    """A named ACL policy."""

    id: str
    name: str
    rules: Rules
    description: str = ""


@dataclass
class Token:
    """An ACL token: its secret, accessor and the policies it carries."""

    accessor_id: str
    secret_id: str
    description: str
    policies: list[str]
    management: bool = False
    create_index: int = 0


class Authorizer:
    """What one token may do; `allows(resource, access, name)` is Consul's Authorizer check."""

    def __init__(self, token: Token | None, rules: Iterable[Rules], default_allow: bool) -> None:
        self.accessor_id = token.accessor_id if token else ""
        self._everything = token is None or token.management
        self._default_allow = default_allow
        self._exact: dict[str, dict[str, str]] = {}
        self._prefix: dict[str, dict[str, str]] = {}
        self._scalar: dict[str, str] = {}
        for policy in rules:
            for resource, names in policy.exact.items():
                for name, level in names.items():
                    _merge(self._exact.setdefault(resource, {}), name, level)
            for resource, names in policy.prefix.items():
                for name, level in names.items():
                    _merge(self._prefix.setdefault(resource, {}), name, level)
            for resource, level in policy.scalar.items():
                _merge(self._scalar, resource, level)

    @property
    def unrestricted(self) -> bool:
        """Whether the token may do everything (ACLs off, or a management token)."""
        return self._everything

    def allows(self, resource: str, access: str, name: str = "") -> bool:
        """Whether the token has `access` (read, write, list) on `resource` `name`."""
        if self._everything:
            return True
        level = self._level(resource, name)
        if level is None:
            return self._default_allow
        return level in _GRANTS[access]

    def require(self, resource: str, access: str, name: str = "") -> None:
        """Raise PermissionDenied (403) unless allows()."""
        if not self.allows(resource, access, name):
            raise PermissionDenied(self.accessor_id, resource, access, name)

    def service_read(self, name: str) -> bool:
        """aclFilter.allowService: an empty service name (a node check) is always visible."""
        return not name or self.allows("service", "read", name)

    def node_read(self, name: str) -> bool:
        """aclFilter.allowNode."""
        return self.allows("node", "read", name)

    def _level(self, resource: str, name: str) -> str | None:
        if resource in SCALAR_RESOURCES:
            return self._scalar.get(resource)
        exact = self._exact.get(resource, {})
        if name in exact:
            return exact[name]
        # The longest prefix rule that matches wins (Consul keeps prefixes in a radix tree).
        best: str | None = None
        for prefix in self._prefix.get(resource, {}):
            if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return self._prefix[resource][best] if best is not None else None


ALLOW_ALL = Authorizer(None, (), default_allow=True)


class ACLStore:
    """Tokens and policies; resolves a request's secret to an Authorizer, as the servers do."""

    def __init__(self, enabled: bool, default_policy: str = "deny") -> None:
        if default_policy not in ("allow", "deny"):
            raise ValueError(
                f"acl default_policy must be 'allow' or 'deny', not {default_policy!r}"
            )
        self.enabled = enabled
        self.default_policy = default_policy
        self._lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        self._tokens: dict[str, Token] = {}
        self._tokens[ANONYMOUS_SECRET] = Token(
            ANONYMOUS_ACCESSOR_ID, ANONYMOUS_SECRET, "Anonymous Token", []
        )

    def create_policy(
        self, name: str, rules: Mapping[str, Any] | str, description: str = ""
    ) -> Policy:
        """Create or replace a policy by name."""
        if not name:
            raise ValueError("an ACL policy needs a name")
        parsed = parse_rules(rules)
        with self._lock:
            existing = self._policies.get(name)
            policy_id = existing.id if existing else str(uuid.uuid4())
            policy = Policy(policy_id, name, parsed, description)
            self._policies[name] = policy
            return policy

    def create_token(
        self,
        secret_id: str | None = None,
        policies: Iterable[str] = (),
        description: str = "",
        accessor_id: str | None = None,
        management: bool = False,
    ) -> Token:
        """Create or replace a token; its policies are named and must exist."""
        names = list(policies)
        with self._lock:
            missing = [name for name in names if name not in self._policies]
            if missing:
                raise ValueError(
                    f"no ACL policy named {missing[0]!r}; create_acl_policy() it first"
                )
            secret = secret_id or str(uuid.uuid4())
            existing = self._tokens.get(secret)
            accessor = accessor_id or (existing.accessor_id if existing else str(uuid.uuid4()))
            token = Token(accessor, secret, description, names, management)
            self._tokens[secret] = token
            return token

    def delete_token(self, secret_id: str) -> None:
        """Delete a token: its secret becomes unknown ("ACL not found")."""
        if secret_id == ANONYMOUS_SECRET:
            raise ValueError("the anonymous token cannot be deleted")
        with self._lock:
            if self._tokens.pop(secret_id, None) is None:
                raise KeyError("no ACL token with that secret")

    def token(self, secret_id: str) -> Token | None:
        """The token with this secret ("" is the anonymous token), or None."""
        with self._lock:
            return self._tokens.get(secret_id or ANONYMOUS_SECRET)

    def policy_by_name(self, name: str) -> Policy | None:
        """A policy, or None."""
        with self._lock:
            return self._policies.get(name)

    def resolve(self, secret_id: str) -> Authorizer:
        """The Authorizer of a request's token; an unknown secret is 403 "ACL not found"."""
        if not self.enabled:
            return ALLOW_ALL
        with self._lock:
            token = self._tokens.get(secret_id or ANONYMOUS_SECRET)
            if token is None:
                # acl.ErrNotFound, which agent/http.go answers with 403.
                raise HTTPError(403, "ACL not found")
            rules = [
                self._policies[name].rules for name in token.policies if name in self._policies
            ]
        return Authorizer(token, rules, default_allow=self.default_policy == "allow")

    def token_json(self, token: Token) -> dict[str, Any]:
        """A token as GET /v1/acl/token/self renders it."""
        with self._lock:
            policies = [
                {"ID": self._policies[name].id, "Name": name}
                for name in token.policies
                if name in self._policies
            ]
        if token.management:
            policies.insert(0, {"ID": GLOBAL_MANAGEMENT_POLICY_ID, "Name": "global-management"})
        return {
            "AccessorID": token.accessor_id,
            "SecretID": token.secret_id,
            "Description": token.description,
            "Policies": policies,
            "Local": False,
            "CreateTime": "2026-01-01T00:00:00Z",
            "Hash": "",
            "CreateIndex": token.create_index,
            "ModifyIndex": token.create_index,
        }
