"""The Consul double and its collector fixtures, shared with tests/consul."""

from tests.consul.conftest import (  # noqa: F401 (fixtures)
    _no_consul_environment,
    collect_until,
    double,
    make_collector,
    make_consul_qd,
)
