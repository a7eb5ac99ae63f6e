"""Agent maintenance mode registers and removes Consul's critical maintenance checks."""

from __future__ import annotations

from demo.consul.catalog import DEFAULT_SERVICE_MAINT_REASON


def _checks_of(client, service: str, service_id: str) -> dict[str, dict]:
    _, entries = client.health.service(service)
    entry = next(e for e in entries if e["Service"]["ID"] == service_id)
    return {check["CheckID"]: check for check in entry["Checks"]}


def test_maintenance_adds_a_critical_check_with_the_reason_in_notes(client, fleet):
    assert client.agent.service.maintenance("orders-2", True, reason="deploy 2.4.2") is True

    check = _checks_of(client, "orders", "orders-2")["_service_maintenance:orders-2"]
    assert check["Status"] == "critical"
    assert check["Name"] == "Service Maintenance Mode"
    assert check["Notes"] == "deploy 2.4.2"
    assert check["ServiceID"] == "orders-2"
    assert check["ServiceName"] == "orders"
    assert "_service_maintenance:orders-1" not in _checks_of(client, "orders", "orders-1")


def test_disabling_maintenance_removes_the_check(client, fleet):
    client.agent.service.maintenance("orders-2", True, reason="deploy")

    assert client.agent.service.maintenance("orders-2", False) is True

    assert "_service_maintenance:orders-2" not in _checks_of(client, "orders", "orders-2")


def test_an_instance_in_maintenance_is_not_passing(client, fleet):
    client.agent.service.maintenance("payments-1", True, reason="drain")

    _, passing = client.health.service("payments", passing=True)

    assert [entry["Service"]["ID"] for entry in passing] == ["payments-2"]


def test_enabling_maintenance_again_keeps_the_first_reason(client, fleet):
    client.agent.service.maintenance("orders-1", True, reason="first")
    client.agent.service.maintenance("orders-1", True, reason="second")

    assert _checks_of(client, "orders", "orders-1")["_service_maintenance:orders-1"]["Notes"] == (
        "first"
    )


def test_maintenance_without_a_reason_uses_consuls_default_notes(client, fleet):
    client.agent.service.maintenance("orders-1", True)

    notes = _checks_of(client, "orders", "orders-1")["_service_maintenance:orders-1"]["Notes"]
    assert notes == DEFAULT_SERVICE_MAINT_REASON


def test_maintenance_of_an_unknown_service_id_is_404_which_py_consul_reports_as_false(
    client, fleet
):
    # py-consul's boolean callback turns a 404 into False rather than raising.
    assert client.agent.service.maintenance("orders", True, reason="by name") is False


def test_node_maintenance_marks_every_instance_on_the_node(client, fleet, double):
    double.enable_node_maintenance("node-b", reason="kernel upgrade")

    _, entries = client.health.service("payments")

    notes = {
        entry["Node"]["Node"]: [c["Notes"] for c in entry["Checks"] if c["Status"] == "critical"]
        for entry in entries
    }
    assert notes == {"node-b": ["kernel upgrade"], "node-c": []}
