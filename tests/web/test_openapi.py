"""The served OpenAPI document lists exactly the /api/v1 routes and describes their real answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.collection.probes import run_and_record
from app.collection.registry import configured_sources
from app.collection.releases import track_releases
from app.collection.runner import run_pass
from app.config import (
    AuthConfig,
    ConsulConfig,
    HAProxyConfig,
    ProbeConfig,
    PrometheusConfig,
    RedisConfig,
    SloConfig,
    StaticServiceConfig,
)
from app.factory import create_app
from app.queries.services import HEALTH_FILTERS
from demo.consul import ConsulDouble
from demo.fleet_seed import seed_demo_fleet
from tests.fixtures.processes import free_port

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "static" / "openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# The subset of JSON Schema the document may use, so the validator below covers all of it.
SCHEMA_KEYWORDS = {
    "$ref",
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "minimum",
    "maximum",
    "additionalProperties",
}
ANNOTATIONS = {"description", "format", "title", "examples", "default"}
# Routes outside /api/v1 that the document describes too (public, `security: []`).
PUBLIC_DOCUMENTED = {"/readyz"}


# -- a validator for the subset of JSON Schema the document uses --------------------------------


def resolve(document: dict, pointer: str) -> dict:
    """Follow a local `#/a/b` reference inside the document."""
    assert pointer.startswith("#/"), f"only local references are used, not {pointer}"
    node = document
    for part in pointer[2:].split("/"):
        node = node[part]
    return node


def _has_type(value, name: str) -> bool:
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "null": value is None,
    }[name]


def schema_errors(value, schema: dict, document: dict, where: str = "$") -> list[str]:
    """List where a value breaks its schema.

    Stricter than JSON Schema on one point: an object member that the schema's `properties`
    do not name is an error unless `additionalProperties` allows it, so every field the code
    returns must be documented.
    """
    if "$ref" in schema:
        return schema_errors(value, resolve(document, schema["$ref"]), document, where)
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(_has_type(value, name) for name in names):
            return [f"{where}: {value!r} is not {' or '.join(names)}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and _has_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value!r} is below the minimum {schema['minimum']}")
    if "maximum" in schema and _has_type(value, "number") and value > schema["maximum"]:
        errors.append(f"{where}: {value!r} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        errors += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        for key, member in value.items():
            if key in properties:
                errors += schema_errors(member, properties[key], document, f"{where}.{key}")
            elif isinstance(extra, dict):
                errors += schema_errors(member, extra, document, f"{where}.{key}")
            elif extra is not True and properties:
                errors.append(f"{where}: {key!r} is not documented")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], document, f"{where}[{i}]")
    return errors


def schemas_in(document: dict) -> Iterator[tuple[str, dict]]:
    """Yield every schema in the document (components, parameters, responses), nested ones too."""

    def walk(schema: dict, where: str):
        yield where, schema
        for key, member in schema.get("properties", {}).items():
            yield from walk(member, f"{where}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                yield from walk(schema[key], f"{where}.{key}")

    for name, schema in document["components"]["schemas"].items():
        yield from walk(schema, name)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                yield from walk(parameter["schema"], f"{method} {path} ?{parameter['name']}")
            for status, response in operation["responses"].items():
                for media in response.get("content", {}).values():
                    yield from walk(media["schema"], f"{method} {path} {status}")


def response_schema(document: dict, path: str, status: int) -> dict:
    """Return the schema documented for GET `path` answering `status`."""
    responses = document["paths"][path]["get"]["responses"]
    assert str(status) in responses, f"GET {path} answered {status}, which is not documented"
    return responses[str(status)]["content"]["application/json"]["schema"]


def assert_matches(document: dict, path: str, response) -> None:
    """Check a real response against what the document says GET `path` returns."""
    assert response.is_json, f"{response.request.path} did not answer JSON"
    schema = response_schema(document, path, response.status_code)
    errors = schema_errors(response.get_json(), schema, document)
    assert not errors, f"{response.request.full_path}:\n" + "\n".join(errors)


def each_parameter_once(document: dict, path: str) -> list[str]:
    """Return one request per documented query parameter, with a value it allows."""
    urls = []
    for parameter in document["paths"][path]["get"].get("parameters", []):
        if parameter["in"] == "query":
            value = parameter["schema"].get("enum", ["1"])[0]
            urls.append(f"{path}?{parameter['name']}={value}")
    return urls


# -- a store with every kind of data the API returns ----------------------------------------------


def _pass(qd, collector) -> None:
    result = run_pass(qd, collector)
    assert result.ok, result.error


@pytest.fixture
def fleet_app(make_qd, make_token):
    """The app over a real collection: Consul (then gone away), static services, disabled sources.

    Returns the app, a viewer token and the service names.
    """
    consul = ConsulDouble()
    seed_demo_fleet(consul)
    consul.start()
    qd = make_qd(
        consul=ConsulConfig(url=consul.url, token_env="", wait_s=2),
        static_services=(
            StaticServiceConfig(
                name="legacy-billing", instances=("10.0.4.7:9301",), tags=("version=2024.3",)
            ),
        ),
        # Nothing listens there: its pass fails, so the prometheus source shows an error.
        prometheus=PrometheusConfig(url=f"http://127.0.0.1:{free_port()}"),
        haproxy=(HAProxyConfig(name="edge", stats_url="http://127.0.0.1:8404/stats;csv"),),
        # Configured, never collected here (every source kind now has a collector: none is
        # "disabled" any more).
        redis=RedisConfig(),
        # One probe that fails (nothing listens: no status) and one that never ran.
        probes=(
            ProbeConfig(
                name="billing-refused",
                service="legacy-billing",
                url=f"http://127.0.0.1:{free_port()}/health",
            ),
            ProbeConfig(name="billing-unrun", service="legacy-billing", url="http://127.0.0.1:1/"),
        ),
        # SLOs from each kind of source: probe runs (with latency), Consul check history,
        # spans (none ingested: no data) and the unreachable Prometheus (a problem, no figures).
        slo=(
            SloConfig(service="legacy-billing", sli="probes", latency_ms=500),
            SloConfig(service="payments", sli="checks", objective=99.0),
            SloConfig(service="gateway", sli="spans"),
            SloConfig(service="orders", sli="prometheus"),
        ),
    )
    sources = {s.name: s for s in configured_sources(qd.config, qd.clock)}
    collector = sources["consul"].collector
    try:
        _pass(qd, sources["static"].collector)
        assert not run_and_record(qd, qd.config.probes[0]).ok
        _pass(qd, collector)  # the full catalog
        assert track_releases(qd).ok  # versions and the demo's releases keys
        consul.set_check("service:payments-2", "critical", "HTTP GET /healthz: 503")
        _pass(qd, collector)
        consul.enable_service_maintenance("orders-3", "canary paused")
        _pass(qd, collector)
        with consul.batch():
            for number in (1, 2, 3):
                consul.deregister_service(f"push-{number}")
        _pass(qd, collector)
        consul.stop()
        assert not run_pass(qd, collector).ok  # now the data is stale, with an error
        assert not run_pass(qd, sources["prometheus"].collector).ok
    finally:
        collector.close()
        consul.stop()
    token = make_token("openapi-reader", "viewer")
    app = create_app(qd=qd)
    body = app.test_client().get(
        "/api/v1/services?gone=1", headers={"Authorization": f"Bearer {token}"}
    )
    names = [s["name"] for s in body.get_json()["services"]]
    return app, token, names


@pytest.fixture
def document() -> dict:
    """The OpenAPI document as shipped."""
    return json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))


# -- the tests ----------------------------------------------------------------------------------


def test_the_served_document_is_the_shipped_openapi_3_1_file(app, make_token, document):
    token = make_token("reader", "viewer")
    response = app.test_client().get(
        "/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200 and response.is_json
    served = response.get_json()
    assert re.fullmatch(r"3\.1\.\d+", served["openapi"])
    assert served == document


def test_every_api_route_is_documented_and_every_documented_path_is_a_route(app, document):
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if (
            rule.rule == "/api/v1"
            or rule.rule.startswith("/api/v1/")
            or rule.rule in PUBLIC_DOCUMENTED
        ):
            path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
            methods = {m.lower() for m in rule.methods} - {"head", "options"}
            routes.setdefault(path, set()).update(methods)
    documented = {
        path: {m for m in item if m in HTTP_METHODS} for path, item in document["paths"].items()
    }
    assert routes == documented


def test_path_parameters_and_the_health_filter_match_the_code(document):
    for path, item in document["paths"].items():
        for operation in item.values():
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(re.findall(r"{([^}]+)}", path)), path
    services = document["paths"]["/api/v1/services"]["get"]["parameters"]
    by_name = {p["name"]: p for p in services}
    assert {"q", "health", "tag", "gone"} <= set(by_name)
    assert by_name["health"]["schema"]["enum"] == list(HEALTH_FILTERS)


def test_the_document_uses_only_the_schema_keywords_the_validator_checks(document):
    for where, schema in schemas_in(document):
        unknown = set(schema) - SCHEMA_KEYWORDS - ANNOTATIONS
        assert not unknown, f"{where} uses {unknown}"


def test_the_validator_reports_wrong_types_missing_and_undocumented_fields(document):
    schema = {"$ref": "#/components/schemas/ServiceSummary"}
    service = {
        "name": "orders",
        "health": "passing",
        "instances": {"total": 1, "passing": 1, "warning": 0, "critical": 0, "maintenance": 0},
        "tags": [],
        "versions": ["2.4.1"],
        "source": "consul",
        "stale": False,
        "stale_since": None,
        "observed_at": "2026-11-27T08:50:46Z",
        "gone_at": None,
    }
    assert schema_errors(service, schema, document) == []
    broken = {k: v for k, v in service.items() if k != "name"}
    broken.update(stale="no", health="green", surprise=1)
    errors = schema_errors(broken, schema, document)
    assert len(errors) == 4, errors
    assert any("missing 'name'" in e for e in errors)
    assert any("'surprise' is not documented" in e for e in errors)


def test_real_answers_of_every_documented_get_match_their_schemas(fleet_app, document):
    app, token, names = fleet_app
    assert {"payments", "orders", "push", "legacy-billing"} <= set(names)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    report_id = _make_report_with_a_failed_delivery(app.extensions["quarterdeck"])
    examples = {
        "/api/v1/services": [
            "/api/v1/services",
            "/api/v1/services?gone=1",
            "/api/v1/services?health=gone",
            "/api/v1/services?health=critical&q=PAY&tag=api",
            "/api/v1/services?health=red",
            *each_parameter_once(document, "/api/v1/services"),
        ],
        "/api/v1/services/{name}": [f"/api/v1/services/{n}" for n in names]
        + ["/api/v1/services/no-such-service"],
        "/api/v1/sources": ["/api/v1/sources"],
        "/api/v1/jobs": ["/api/v1/jobs"],
        "/api/v1/push/connections": ["/api/v1/push/connections"],
        "/api/v1/map": [
            "/api/v1/map",
            "/api/v1/map?service=orders&hops=2&compare=1h",
            "/api/v1/map?unhealthy=true&limit=10",
            "/api/v1/map?since=yesterday",
            *each_parameter_once(document, "/api/v1/map"),
        ],
        # Filled answers are checked in tests/traces/test_traces_openapi.py.
        "/api/v1/traces": ["/api/v1/traces", "/api/v1/traces?min_ms=x"],
        "/api/v1/traces/{trace_id}": [f"/api/v1/traces/{'a' * 32}", "/api/v1/traces/xyz"],
        "/api/v1/openapi.json": ["/api/v1/openapi.json"],
        "/api/v1/probes": [
            "/api/v1/probes",
            "/api/v1/probes?window_h=1&service=legacy-billing",
            "/api/v1/probes?window_h=0",
        ],
        "/readyz": ["/readyz"],
        "/api/v1/idempotency/conflicts": [
            "/api/v1/idempotency/conflicts",
            "/api/v1/idempotency/conflicts?kind=nope",
            *each_parameter_once(document, "/api/v1/idempotency/conflicts"),
        ],
        "/api/v1/audit": ["/api/v1/audit", "/api/v1/audit?since=yesterday"],
        "/api/v1/palette": [
            "/api/v1/palette",
            "/api/v1/palette?q=pay",
            "/api/v1/palette?q=orders&limit=5",
            "/api/v1/palette?limit=0",
        ],
        # Filled answers are checked in tests/actions/test_runbooks_api.py.
        "/api/v1/runbooks": ["/api/v1/runbooks"],
        "/api/v1/rules": ["/api/v1/rules", "/api/v1/rules?limit=0"],
        "/api/v1/rules/replay": ["/api/v1/rules/replay", "/api/v1/rules/replay?hours=999"],
        "/api/v1/reports": [
            "/api/v1/reports",
            "/api/v1/reports?limit=x",
            *each_parameter_once(document, "/api/v1/reports"),
        ],
        "/api/v1/reports/{report_id}": [f"/api/v1/reports/{report_id}", "/api/v1/reports/nope"],
        "/api/v1/slo": ["/api/v1/slo", "/api/v1/slo?service=payments"],
        "/api/v1/releases": [
            "/api/v1/releases",
            "/api/v1/releases?service=orders",
            "/api/v1/releases?service=legacy-billing",
            "/api/v1/releases?limit=x",
            *each_parameter_once(document, "/api/v1/releases"),
        ],
    }
    documented_gets = {p for p, item in document["paths"].items() if "get" in item}
    assert set(examples) == documented_gets, "give every documented GET an example request"
    statuses = set()
    for path, urls in examples.items():
        for url in urls:
            response = client.get(url, headers=auth)
            statuses.add(response.status_code)
            assert_matches(document, path, response)
            assert_matches(document, path, client.get(url))  # no credentials: 401
    assert statuses == {200, 400, 404}
    # The answers above covered what the schemas make optional or nullable.
    sources = {s["name"]: s for s in client.get("/api/v1/sources", headers=auth).json["sources"]}
    assert {s["status"] for s in sources.values()} == {"error", "ok", "stale"}
    assert sources["edge"]["status"] == "stale"  # configured, never collected yet
    assert sources["consul"]["error_kind"] == "unavailable"
    payments = client.get("/api/v1/services/payments", headers=auth).json
    assert payments["stale"] is True and payments["stale_since"]
    assert payments["transitions"] and payments["transitions"][0]["to"] == "critical"
    orders = client.get("/api/v1/services/orders", headers=auth).json
    assert any(i["maintenance"] for i in orders["instances"])
    push = client.get("/api/v1/services/push", headers=auth).json
    assert push["gone_at"] and all(i["health"] == "gone" for i in push["instances"])
    slo = {s["service"]: s for s in client.get("/api/v1/slo", headers=auth).json["slo"]}
    assert slo["legacy-billing"]["latency"] is not None and slo["payments"]["latency"] is None
    assert slo["payments"]["burn_rate"]["1h"] is not None
    assert slo["orders"]["problem"] and slo["gateway"]["state"] == "no_data"
    releases = client.get("/api/v1/releases?service=orders", headers=auth).json
    assert releases["comparison"] is not None
    assert {r["kv_role"] for r in releases["releases"]} >= {"active", "previous"}


def _make_report_with_a_failed_delivery(qd) -> str:
    """A stored report whose webhook delivery failed once (its key variable is not set)."""
    from app.config import ReportConfig
    from app.reports.running import run_now

    report = ReportConfig(
        name="handoff", webhook_url="http://127.0.0.1:9/", webhook_secret_env="QD_UNSET_SECRET"
    )
    qd.config = qd.config.replace(reports=(report,))
    return run_now(qd, "handoff")


def test_a_disabled_trusted_header_user_gets_the_documented_403(fleet_app, make_qd, document):
    from app.auth.accounts import ensure_header_user

    qd = make_qd(auth=AuthConfig(header="X-Remote-User", trusted_proxies=("127.0.0.1",)))
    with qd.store.session() as db:
        ensure_header_user(db, "mallory").disabled = True
    client = create_app(qd=qd).test_client()
    for path, item in document["paths"].items():
        if "get" not in item or item["get"].get("security") == []:
            continue  # public: no caller to refuse
        url = path.replace("{name}", "payments")
        response = client.get(url, headers={"X-Remote-User": "mallory"})
        assert response.status_code == 403
        assert_matches(document, path, response)
