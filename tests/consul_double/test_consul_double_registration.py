"""Registering and deregistering over HTTP, through py-consul, as an agent and the catalog do."""

from __future__ import annotations

import json
from collections.abc import Iterator

import consul
import pytest
import requests

from demo.consul import ConsulDouble

TOKEN = "5d1c0e7a-9b2f-4e11-8c3d-aabbccddeeff"


def put(double: ConsulDouble, path: str, body: bytes | str, token: str = "") -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    data = body.encode() if isinstance(body, str) else body
    return requests.put(f"{double.url}{path}", data=data, headers=headers, timeout=5)


def index_of(double: ConsulDouble, path: str) -> int:
    return int(requests.get(f"{double.url}{path}", timeout=5).headers["X-Consul-Index"])


# ----- agent service register / deregister ------------------------------------------------------


def test_an_agent_registration_appears_in_catalog_and_health(client, double):
    assert client.agent.service.register(
        "web",
        service_id="web-1",
        address="10.0.0.7",
        port=8080,
        tags=["v2"],
        meta={"version": "2.0.1"},
        weights={"Passing": 3, "Warning": 1},
        check=consul.Check.http("http://10.0.0.7:8080/health", interval="10s", timeout="2s"),
    )

    _, entries = client.health.service("web")
    (entry,) = entries
    assert entry["Node"]["Node"] == double.node_name
    service = entry["Service"]
    assert (service["ID"], service["Address"], service["Port"]) == ("web-1", "10.0.0.7", 8080)
    assert (service["Tags"], service["Meta"]) == (["v2"], {"version": "2.0.1"})
    assert service["Weights"] == {"Passing": 3, "Warning": 1}
    check = entry["Checks"][1]
    assert (check["CheckID"], check["Name"]) == ("service:web-1", "Service 'web' check")
    # A new check is critical until it has run (agent.go: the initial status).
    assert (check["Type"], check["Status"], check["Interval"]) == ("http", "critical", "10s")
    assert check["Definition"]["HTTP"] == "http://10.0.0.7:8080/health"
    assert client.catalog.services()[1]["web"] == ["v2"]


def test_an_agent_registration_id_defaults_to_the_name_and_checks_number(client, double):
    client.agent.service.register(
        "cache",
        port=6379,
        check=consul.Check.ttl("30s"),
        extra_checks=[consul.Check.tcp("127.0.0.1", 6379, "5s")],
    )

    _, entries = client.health.service("cache")

    assert entries[0]["Service"]["ID"] == "cache"
    assert [c["CheckID"] for c in entries[0]["Checks"]] == [
        "serfHealth",
        "service:cache:1",
        "service:cache:2",
    ]
    assert {c["Type"] for c in entries[0]["Checks"][1:]} == {"ttl", "tcp"}


def test_a_check_status_given_in_the_definition_is_kept(client):
    client.agent.service.register(
        "api", service_id="api-1", port=1, check={"TTL": "30s", "Status": "passing"}
    )

    assert client.health.service("api", passing=True)[1][0]["Service"]["ID"] == "api-1"


def test_re_registering_keeps_other_checks_unless_replace_existing_checks(client, double):
    checks = [consul.Check.ttl("30s"), consul.Check.ttl("60s")]
    client.agent.service.register(
        "api", service_id="api-1", port=1, check=checks[0], extra_checks=[checks[1]]
    )

    client.agent.service.register(
        "api", service_id="api-1", port=1, check={"TTL": "30s", "CheckID": "only"}
    )
    kept = [c["CheckID"] for c in client.health.checks("api")[1]]
    client.agent.service.register(
        "api",
        service_id="api-1",
        port=1,
        check={"TTL": "30s", "CheckID": "only"},
        replace_existing_checks=True,
    )
    replaced = [c["CheckID"] for c in client.health.checks("api")[1]]

    assert kept == ["only", "service:api-1:1", "service:api-1:2"]
    assert replaced == ["only"]


def test_an_identical_re_registration_moves_no_index(client, double):
    definition = {"port": 1, "tags": ["a"], "check": consul.Check.ttl("30s")}
    client.agent.service.register("api", service_id="api-1", **definition)
    before = index_of(double, "/v1/catalog/services")

    client.agent.service.register("api", service_id="api-1", **definition)

    assert index_of(double, "/v1/catalog/services") == before


def test_a_re_registration_keeps_the_check_status_the_agent_has(client, double):
    client.agent.service.register("api", service_id="api-1", port=1, check=consul.Check.ttl("30s"))
    double.set_check("service:api-1", "passing", "fine")

    client.agent.service.register("api", service_id="api-1", port=2, check=consul.Check.ttl("30s"))

    check = client.health.checks("api")[1][0]
    assert (check["Status"], check["Output"]) == ("passing", "fine")


def test_a_sidecar_service_registers_its_own_proxy_instance(client, double):
    client.agent.service.register(
        "orders",
        service_id="orders-1",
        port=8080,
        connect={
            "SidecarService": {
                "Proxy": {"Upstreams": [{"DestinationName": "payments", "LocalBindPort": 9191}]}
            }
        },
    )

    _, (entry,) = client.health.service("orders-sidecar-proxy")
    sidecar = entry["Service"]
    assert (sidecar["ID"], sidecar["Kind"]) == ("orders-1-sidecar-proxy", "connect-proxy")
    assert 21000 <= sidecar["Port"] <= 21255
    proxy = sidecar["Proxy"]
    assert (proxy["DestinationServiceName"], proxy["DestinationServiceID"]) == (
        "orders",
        "orders-1",
    )
    assert proxy["LocalServicePort"] == 8080
    assert proxy["Upstreams"][0]["DestinationName"] == "payments"
    assert entry["Checks"][1]["Name"] == "Connect Sidecar Listening"


def test_a_proxy_registration_needs_its_destination_and_port(double):
    response = put(
        double, "/v1/agent/service/register", '{"Name": "p", "Kind": "connect-proxy", "Port": 1}'
    )

    assert (response.status_code, response.text) == (
        400,
        "Validation failed: Proxy.DestinationServiceName must be set",
    )


def test_agent_deregister_removes_the_service_and_its_checks(client, double):
    client.agent.service.register("api", service_id="api-1", port=1, check=consul.Check.ttl("30s"))

    assert client.agent.service.deregister("api-1")

    assert "api" not in client.catalog.services()[1]
    assert all(c["ServiceID"] != "api-1" for c in client.health.state("any")[1])


def test_agent_deregister_of_an_unknown_id_is_a_404(double):
    response = put(double, "/v1/agent/service/deregister/nope", b"")

    assert response.status_code == 404
    assert response.text.startswith('Unknown service ID "nope"')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "Request decode failed: EOF"),
        ("{", "Request decode failed: "),
        ("[]", "Request decode failed: json: cannot unmarshal array"),
        ('{"Port": 80}', "Missing service name"),
        ('{"Name": "x", "Port": "80"}', "ServiceDefinition.Port of type int"),
        ('{"Name": "x", "Tags": "a"}', "ServiceDefinition.Tags of type []string"),
        (
            '{"Name": "x", "Meta": {"a b": "c"}}',
            "Invalid Service Meta: Key contains invalid characters",
        ),
        ('{"Name": "x", "Meta": {"consul-x": "c"}}', "Key prefix 'consul-' is reserved"),
        (
            '{"Name": "x", "Weights": {"Passing": 0}}',
            "Invalid Weights: Passing must be greater than 0",
        ),
        ('{"Name": "x", "Check": {"HTTP": "http://h/"}}', "Invalid check: Interval must be > 0"),
        ('{"Name": "x", "Check": {"Interval": "10s"}}', "Invalid check: TTL must be > 0"),
        ('{"Name": "x", "Check": {"TTL": "10s", "Interval": "1s", "TCP": "h:1"}}', "cannot both"),
        (
            '{"Name": "x", "Check": {"TTL": "soon"}}',
            "Request decode failed: time: invalid duration",
        ),
        ('{"Name": "x", "Check": {"TTL": "9s", "Status": "ok"}}', "Status for checks must"),
        (
            '{"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "1s"}}',
            "Scripts are disabled",
        ),
        ('{"Name": "x", "Port": 70000}', "Invalid port 70000"),
    ],
)
def test_a_bad_agent_registration_is_a_400_naming_what_is_wrong(double, body, message):
    response = put(double, "/v1/agent/service/register", body)

    assert response.status_code == 400
    assert message in response.text
    assert "x" not in set(requests.get(f"{double.url}/v1/catalog/services", timeout=5).json())


def test_keys_match_case_insensitively_and_in_snake_case(double):
    body = '{"name": "web", "id": "web-1", "port": 80, "enable_tag_override": true}'

    assert put(double, "/v1/agent/service/register", body).status_code == 200
    assert double.catalog.services["web-1"].enable_tag_override is True


# ----- catalog register / deregister -------------------------------------------------------------


def test_catalog_register_creates_an_external_node_with_service_and_check(client, double):
    body = {
        "Node": "db-host",
        "Address": "10.2.0.5",
        "NodeMeta": {"rack": "r7"},
        "Service": {"Service": "postgres", "ID": "pg-1", "Port": 5432, "Tags": ["primary"]},
        "Check": {"Name": "pg up", "Status": "passing", "ServiceID": "pg-1"},
    }
    # py-consul sends node_meta= as ?node-meta, which Consul's register ignores: use the body.
    assert put(double, "/v1/catalog/register", json.dumps(body)).json() is True

    _, (entry,) = client.health.service("postgres")
    assert entry["Node"]["Address"] == "10.2.0.5"
    # An external node's meta is what was registered, without an agent's own keys.
    assert entry["Node"]["Meta"] == {"rack": "r7"}
    # An external node has no agent, hence no serfHealth.
    assert [(c["CheckID"], c["Status"]) for c in entry["Checks"]] == [("pg up", "passing")]


def test_catalog_register_is_one_write_with_one_index(client, double):
    before = double.index

    client.catalog.register(
        "db-host",
        "10.2.0.5",
        service={"Service": "postgres", "ID": "pg-1", "Port": 5432},
        check={"Name": "pg up", "ServiceID": "pg-1"},
    )

    assert double.index == before + 1


def test_a_catalog_check_without_status_is_critical(client, double):
    client.catalog.register("db-host", "10.2.0.5", check={"Name": "disk"})

    assert client.health.node("db-host")[1][0]["Status"] == "critical"


def test_catalog_register_changes_a_nodes_address_and_meta_moving_the_nodes_index(
    client, double, fleet
):
    before = index_of(double, "/v1/catalog/nodes")
    health_before = index_of(double, "/v1/health/service/payments")

    body = {"Node": "node-b", "Address": "10.9.9.9", "NodeMeta": {"availability-zone": "az-z"}}
    assert put(double, "/v1/catalog/register", json.dumps(body)).status_code == 200

    nodes = {n["Node"]: n for n in client.catalog.nodes()[1]}
    assert nodes["node-b"]["Address"] == "10.9.9.9"
    assert nodes["node-b"]["Meta"]["availability-zone"] == "az-z"
    assert index_of(double, "/v1/catalog/nodes") > before
    assert index_of(double, "/v1/health/service/payments") > health_before
    # The agent node keeps its serfHealth check and its services.
    assert "serfHealth" in double.catalog.checks["node-b"]
    assert double.catalog.by_node["node-b"]


def test_skip_node_update_leaves_the_node_as_it_is(client, double, fleet):
    before = index_of(double, "/v1/catalog/nodes")

    client.catalog.register(
        "node-b",
        "",
        service={"Service": "extra", "ID": "extra-1", "Port": 1},
        skip_node_update=True,
    )

    assert double.catalog.nodes["node-b"].address == "127.0.0.1"
    assert "extra" in client.catalog.services()[1]
    # The service moves the nodes index (catalogInsertService); the node itself is untouched.
    assert index_of(double, "/v1/catalog/nodes") > before


def test_catalog_deregister_removes_a_service_a_check_or_the_node(client, double):
    client.catalog.register(
        "db-host",
        "10.2.0.5",
        service={"Service": "postgres", "ID": "pg-1", "Port": 5432},
        check={"Name": "disk"},
    )

    assert client.catalog.deregister("db-host", check_id="disk")
    assert client.health.node("db-host")[1] == []
    assert client.catalog.deregister("db-host", service_id="pg-1")
    assert "postgres" not in client.catalog.services()[1]
    assert client.catalog.deregister("db-host")
    assert "db-host" not in {n["Node"] for n in client.catalog.nodes()[1]}
    # Removing what is already gone is not an error in Consul.
    assert client.catalog.deregister("db-host", service_id="pg-1")


def test_deregistering_a_node_moves_the_nodes_index(client, double, fleet):
    before = index_of(double, "/v1/catalog/nodes")

    client.catalog.deregister("node-c")

    assert index_of(double, "/v1/catalog/nodes") > before
    assert all(e["Node"]["Node"] != "node-c" for e in client.health.service("orders")[1])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{"Address": "1.2.3.4"}', 400, "Must provide node"),
        ('{"Node": "n"}', 400, "Must provide address if SkipNodeUpdate is not set"),
        (
            '{"Node": "n", "Address": "a", "ID": "not-a-uuid"}',
            400,
            "Bad node ID: uuid string is wrong",
        ),
        (
            '{"Node": "n", "Address": "a", "ID": "zzzzzzzz-9b2f-4e11-8c3d-aabbccddeeff"}',
            400,
            "Bad node ID: uuid is improperly formatted",
        ),
        ('{"Node": "n", "Address": "a", "Datacenter": "dc9"}', 500, "No path to datacenter"),
        ('{"Node": "n", "Address": "a", "Service": {"Port": 1}}', 400, "Must provide service name"),
        ('{"Node": "n", "Address": "a", "NodeMeta": {"": "x"}}', 400, "Key cannot be blank"),
        (
            '{"Node": "n", "Address": "a", "Check": {"Name": "c", "ServiceID": "zz"}}',
            400,
            "Unknown service ID 'zz'",
        ),
        (
            '{"Node": "n", "Address": "a", "Check": {"Name": "c", "Status": "up"}}',
            400,
            "Status for checks",
        ),
        (
            '{"Node": "n", "Address": "a", "Check": {"Name": "c", "Node": "m"}}',
            400,
            "does not match node",
        ),
        ('{"Node": 5, "Address": "a"}', 400, "RegisterRequest.Node of type string"),
    ],
)
def test_a_bad_catalog_registration_is_refused_with_consuls_words(double, body, status, message):
    response = put(double, "/v1/catalog/register", body)

    assert response.status_code == status
    assert message in response.text
    assert "n" not in double.catalog.nodes


def test_catalog_deregister_needs_a_node(double):
    response = put(double, "/v1/catalog/deregister", '{"ServiceID": "x"}')

    assert (response.status_code, response.text) == (400, "Must provide node")


# ----- ACLs ----------------------------------------------------------------------------------


@pytest.fixture
def guarded() -> Iterator[ConsulDouble]:
    """A double with ACLs on (default deny) and the demo fleet."""
    with ConsulDouble(acl_token=TOKEN) as running:
        running.register_node("node-a", "127.0.0.1")
        running.register_service("node-a", "orders-1", "orders", port=1)
        yield running


def test_registering_needs_service_write_on_the_name(guarded, make_client):
    writer = guarded.create_acl_token(rules={"service": {"web": "write"}})
    reader = guarded.create_acl_token(rules={"service": {"web": "read"}})

    assert make_client(guarded, token=writer).agent.service.register("web", port=1)
    with pytest.raises(
        consul.ACLPermissionDenied, match="lacks permission 'service:write' on \"web\""
    ):
        make_client(guarded, token=reader).agent.service.register("web", port=2)
    with pytest.raises(consul.ACLPermissionDenied, match="Permission denied"):
        make_client(guarded, token=writer).agent.service.deregister("orders-1")
    assert make_client(guarded, token=writer).agent.service.deregister("web")


def test_an_unknown_token_cannot_register(guarded, make_client):
    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        make_client(guarded, token="nope").agent.service.register("web", port=1)


def test_catalog_register_needs_node_write_only_when_the_node_changes(guarded, make_client):
    services_only = guarded.create_acl_token(rules={"service": {"web": "write"}})
    client = make_client(guarded, token=services_only)

    # The node is re-posted unchanged: service:write is enough (vetRegisterWithACL).
    assert client.catalog.register("node-a", "127.0.0.1", service={"Service": "web", "Port": 1})
    with pytest.raises(consul.ACLPermissionDenied, match="'node:write' on \"node-a\""):
        client.catalog.register("node-a", "10.0.0.1", service={"Service": "web", "Port": 1})
    with pytest.raises(consul.ACLPermissionDenied, match="'node:write' on \"node-a\""):
        client.catalog.register("node-a", "127.0.0.1", check={"Name": "node check"})


def test_catalog_deregister_accepts_node_write_or_write_on_what_goes(guarded, make_client):
    node_writer = guarded.create_acl_token(rules={"node": {"node-a": "write"}})
    service_writer = guarded.create_acl_token(rules={"service": {"orders": "write"}})
    guarded.register_service("node-a", "orders-2", "orders", port=2)

    with pytest.raises(consul.ACLPermissionDenied, match="'node:write'"):
        make_client(guarded, token=service_writer).catalog.deregister("node-a")
    assert make_client(guarded, token=service_writer).catalog.deregister("node-a", "orders-2")
    assert make_client(guarded, token=node_writer).catalog.deregister("node-a", "orders-1")
    assert guarded.catalog.by_name == {"consul": guarded.catalog.by_name["consul"]}


def test_a_service_id_taken_on_another_node_is_refused_before_anything_is_written(double, fleet):
    body = {
        "Node": "new-node",
        "Address": "10.3.0.1",
        "Service": {"Service": "x", "ID": "orders-1"},
    }

    response = put(double, "/v1/catalog/register", json.dumps(body))

    assert response.status_code == 400
    assert "already registered on node" in response.text
    assert "new-node" not in double.catalog.nodes
