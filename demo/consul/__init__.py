"""A protocol-faithful double of the Consul HTTP API, for the test-suite and `quarterdeck demo`.

One object plays the servers and every node's agent: catalog, health, agent maintenance, KV with
CAS and locks, sessions, blocking queries with per-endpoint `X-Consul-Index`, ACL tokens and
policies with Consul >= 1.13's filtered reads, `?dc`, injectable faults (per request, or at a
rate from a background thread: registration churn, check-output churn, spurious wakes). Tests
and the demo change its state through ConsulDouble's methods; clients talk to it over real HTTP
at `ConsulDouble.url`.
"""

from demo.consul.double import ConsulDouble
from demo.consul.faults import FAULT_KINDS
from demo.consul.rate_faults import CHURN_META_KEY, RATE_FAULT_KINDS

__all__ = ["CHURN_META_KEY", "FAULT_KINDS", "RATE_FAULT_KINDS", "ConsulDouble"]
