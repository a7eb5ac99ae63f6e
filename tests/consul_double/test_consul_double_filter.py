"""The ?filter subset evaluates like go-bexpr on Consul's JSON records."""

from __future__ import annotations

import pytest

from demo.consul.bexpr import FilterError, compile_filter

ENTRY = {
    "Node": {"Node": "node-a", "Meta": {"availability-zone": "az-a"}},
    "Service": {
        "ID": "orders-3",
        "Tags": ["http", "canary"],
        "Meta": {"version": "2.5.0"},
        "Port": 18112,
        "EnableTagOverride": False,
    },
    "Checks": [
        {"CheckID": "serfHealth", "Status": "passing"},
        {"CheckID": "service:orders-3", "Status": "critical"},
    ],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.Tags contains "canary"', True),
        ('Service.Tags contains "v2"', False),
        ('"canary" in Service.Tags', True),
        ('"canary" not in Service.Tags', False),
        ('Service.Tags not contains "v2"', True),
        ('Service.Meta.version == "2.5.0"', True),
        ("Service.Meta.version != `2.5.0`", False),
        ("Service.Port == 18112", True),
        ("Service.EnableTagOverride == false", True),
        ('Node.Meta["availability-zone"] == "az-a"', True),
        ('Node.Meta["availability-zone"] == "az-b"', False),
        ("Service.Tags contains", None),
        ('Service.Meta.version matches "^2\\\\."', True),
        ('Checks.Status contains "critical"', True),
        ("Service.Meta.owner is empty", True),
        ("Service.Tags is not empty", True),
        ('Service.Tags contains "canary" and Node.Node == "node-b"', False),
        ('Service.Tags contains "canary" or Node.Node == "node-b"', True),
        ('not (Node.Node == "node-b")', True),
        ('not Service.Tags contains "canary"', False),
    ],
)
def test_expressions_evaluate_against_a_health_entry(expression, expected):
    if expected is None:
        with pytest.raises(FilterError):
            compile_filter(expression)
        return

    assert compile_filter(expression)(ENTRY) is expected


@pytest.mark.parametrize(
    "expression", ["", "Service.Tags contains", '"x" in', "(Node.Node == 'a'", "a == b ==", "=="]
)
def test_malformed_expressions_are_refused(expression):
    with pytest.raises(FilterError):
        compile_filter(expression)
