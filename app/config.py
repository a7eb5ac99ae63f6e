"""Load and validate Quarterdeck's TOML configuration (DESIGN §3)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_PATH = "quarterdeck.toml"
ENV_PREFIX = "QUARTERDECK_"


class ConfigError(ValueError):
    """A configuration problem, naming the key and where it came from."""


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///quarterdeck.db"


@dataclass(frozen=True)
class ServerConfig:
    bind: str = "127.0.0.1:8080"
    secret_key_env: str = "QUARTERDECK_SECRET_KEY"  # noqa: S105 (a variable name)
    # Worker threads for pages and the API; live streams run on the event loop instead.
    threads: int = 32
    cookie_secure: bool = True
    session_hours: int = 12
    session_idle_minutes: int = 60
    # Reverse proxies whose X-Forwarded-For names the client (for rate limiting and logs).
    forwarded_allow_ips: tuple[str, ...] = ()
    streams_per_user: int = 20
    max_streams: int = 2000
    stream_recheck_s: int = 5


@dataclass(frozen=True)
class AuthConfig:
    header: str = ""
    trusted_proxies: tuple[str, ...] = ()
    max_failures: int = 5
    user_max_failures: int = 20
    failure_window_s: int = 900


@dataclass(frozen=True)
class ConsulConfig:
    url: str = "http://127.0.0.1:8500"
    token_env: str = "CONSUL_HTTP_TOKEN"  # noqa: S105 (a variable name)
    datacenter: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    wait_s: int = 60
    # Where maintenance is sent for a service on node {node} (an agent endpoint); "": `url`.
    agent_url: str = ""


# PromQL templates per preset; {label}, {window} and {quantile} are filled in, nothing else.
# Every template aggregates `by ({label})`, so one query answers for every service.
PROMQL_PRESETS: dict[str, dict[str, str]] = {
    # OpenTelemetry semantic conventions: http.server.request.duration, seconds.
    "otel": {
        "rate_query": (
            "sum by ({label}) (rate(http_server_request_duration_seconds_count[{window}]))"
        ),
        "error_ratio_query": (
            "(sum by ({label}) (rate(http_server_request_duration_seconds_count"
            '{http_response_status_code=~"5.."}[{window}]))'
            " or sum by ({label}) (rate(http_server_request_duration_seconds_count[{window}])) * 0)"
            " / sum by ({label}) (rate(http_server_request_duration_seconds_count[{window}]))"
        ),
        "latency_query": (
            "histogram_quantile({quantile}, sum by ({label}, le)"
            " (rate(http_server_request_duration_seconds_bucket[{window}])))"
        ),
    },
    # The classic client-library names: http_requests_total{status} and a seconds histogram.
    "classic": {
        "rate_query": "sum by ({label}) (rate(http_requests_total[{window}]))",
        "error_ratio_query": (
            '(sum by ({label}) (rate(http_requests_total{status=~"5.."}[{window}]))'
            " or sum by ({label}) (rate(http_requests_total[{window}])) * 0)"
            " / sum by ({label}) (rate(http_requests_total[{window}]))"
        ),
        "latency_query": (
            "histogram_quantile({quantile}, sum by ({label}, le)"
            " (rate(http_request_duration_seconds_bucket[{window}])))"
        ),
    },
}


@dataclass(frozen=True)
class PrometheusConfig:
    url: str = "http://127.0.0.1:9090"
    # Which default PromQL templates to use; a *_query key set here replaces its template.
    preset: str = "otel"
    service_label: str = "service"
    window: str = "5m"
    rate_query: str = ""
    error_ratio_query: str = ""
    # Must answer in seconds; Quarterdeck shows milliseconds.
    latency_query: str = ""
    push_gauge: str = "push_connections_active"
    push_service_label: str = "service"
    push_instance_label: str = "instance"
    alert_service_label: str = "service"
    timeout_s: int = 5
    # On-demand chart reads (range queries) get their own, short timeout.
    range_timeout_s: int = 3

    def template(self, key: str) -> str:
        """Return the PromQL template for `key` (rate_query, ...): the configured or preset one."""
        return getattr(self, key) or PROMQL_PRESETS[self.preset][key]


@dataclass(frozen=True)
class AlertmanagerConfig:
    url: str = "http://127.0.0.1:9093"
    timeout_s: int = 5


@dataclass(frozen=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    stream: str = "quarterdeck:idem:events"
    key_pattern: str = "idem:*"
    timeout_s: int = 5
    # The consumer group the collector reads the stream with, and its consumer name in it
    # ("" = quarterdeck@<hostname>, stable across restarts so its pending entries come back).
    group: str = "quarterdeck"
    consumer: str = ""
    batch: int = 1000  # entries per XREADGROUP / XAUTOCLAIM call
    max_per_pass: int = 50000  # entries stored per collection pass at most
    claim_idle_ms: int = 60000  # a pending entry idle this long is taken over (XAUTOCLAIM)
    scan_max_keys: int = 1000  # in-flight keys sampled per pass at most (SCAN)
    # The Idempotency page calls a key a retry storm above this many events in one minute.
    storm_per_min: int = 10
    # Quarterdeck's own keyed requests while this Redis is unreachable: false answers 503,
    # true runs them without their key (the audit still refuses a second action per key).
    fail_open: bool = False


@dataclass(frozen=True)
class HAProxyConfig:
    name: str
    stats_url: str
    runtime: str = ""


@dataclass(frozen=True)
class NginxConfig:
    name: str
    status_url: str
    upstream_conf: str = ""
    reload: tuple[str, ...] = ("nginx", "-s", "reload")
    # Checks a changed upstream file before reload; empty: the reload command with
    # "-s reload" replaced by "-t" (DESIGN §3).
    test: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.test:
            object.__setattr__(self, "test", nginx_test_command(self.reload))


def nginx_test_command(reload: tuple[str, ...]) -> tuple[str, ...]:
    """Return `reload` with its "-s reload" replaced by "-t", or () if it has none."""
    for i in range(len(reload) - 1):
        if reload[i : i + 2] == ("-s", "reload"):
            return (*reload[:i], "-t", *reload[i + 2 :])
    return ()


@dataclass(frozen=True)
class StaticServiceConfig:
    name: str
    instances: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class CatalogConfig:
    owner_meta: str = "owner"
    docs_meta: str = "docs"
    runbook_meta: str = "runbook"


@dataclass(frozen=True)
class CollectConfig:
    interval_s: int = 10


@dataclass(frozen=True)
class LeaderConfig:
    # This process's name among the replicas; empty means host:pid.
    replica: str = ""
    # How often the leader checks its lock and a follower tries to take it.
    heartbeat_s: float = 1.0


@dataclass(frozen=True)
class VerdictConfig:
    # Above this error ratio (0-1) Prometheus disagrees with passing checks ...
    error_ratio: float = 0.05
    # ... once the service serves at least this many requests a second.
    min_rate_rps: float = 0.1


@dataclass(frozen=True)
class OtlpConfig:
    # The variable holding the ingest token; unset or empty: ingest takes no token.
    token_env: str = "QUARTERDECK_OTLP_TOKEN"  # noqa: S105 (a variable name)
    # The limit applies to the body after decompression (and to the body as sent).
    max_body_mb: int = 8


@dataclass(frozen=True)
class RetentionConfig:
    spans_h: int = 72
    samples_d: int = 14
    transitions_d: int = 400
    audit_d: int = 0
    # Row budget for stored spans (0: none). Above it whole traces go, oldest first, except
    # error traces and slow ones (see slow_ms).
    spans_max: int = 0
    # A trace at least this long is slow and kept (0: only the p95 rule, slower than 95% of
    # the traces with the same root operation).
    slow_ms: int = 0
    # Idempotency events (the stream's copy in the store; Redis keeps its own, trimmed).
    idempotency_d: int = 30


@dataclass(frozen=True)
class MapConfig:
    # The whole-fleet map shows at most this many nodes; past it the rest is grouped.
    node_limit: int = 300
    # How to group: "prefix" (name up to - . _ / :), "tag:<prefix>" or "meta:<key>".
    group_by: str = "prefix"
    # Optional PromQL whose series name an edge by two labels; the value is its rate (req/s).
    edge_query: str = ""
    edge_source_label: str = "source"
    edge_target_label: str = "target"


@dataclass(frozen=True)
class ProbeConfig:
    """One business availability probe (`[[probes]]`, docs/configuration.md)."""

    name: str
    service: str
    url: str
    method: str = "GET"
    interval_s: int = 30
    timeout_ms: int = 2000
    expect_status: int = 200
    # A substring the body must contain ("": any body).
    expect_body: str = ""
    # {path = "$.status", equals = "ok"}: the JSON body's value at path must equal `equals`.
    expect_json: dict[str, typing.Any] = field(default_factory=dict)
    # Slower than this is a failure (0: only the timeout limits it).
    latency_budget_ms: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    # Header name -> the environment variable holding its value (secrets stay out of the file).
    headers_env: dict[str, str] = field(default_factory=dict)
    body: str = ""
    follow_redirects: bool = False


@dataclass(frozen=True)
class RunbooksConfig:
    # The YAML file of named multi-step procedures (relative to this file's folder).
    file: str = ""


@dataclass(frozen=True)
class RuleConfig:
    """One guarded automation rule (`[[rules]]`, docs/runbooks.md)."""

    name: str
    when: str
    runbook: str
    for_s: int = 60
    # propose (a plan waiting for approval) | auto (runs within limits) | dry-run (audit only)
    mode: str = "propose"
    # auto: at most this many automated runs on one service in any hour.
    max_per_hour: int = 2
    # The condition's own parameters (threshold, probe, source ...).
    params: dict[str, typing.Any] = field(default_factory=dict)
    # Sources that must be fresh for the rule to act ([]: the ones its condition reads).
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class AutomationConfig:
    # How often the rules are evaluated.
    interval_s: int = 15
    # Proposals are POSTed here as JSON ("": not sent).
    webhook_url: str = ""
    # The variable holding a bearer token for the webhook ("": none sent).
    webhook_token_env: str = ""
    webhook_timeout_s: int = 5


@dataclass(frozen=True)
class SmtpConfig:
    """The mail server reports are sent through (`[smtp]`, docs/reports.md)."""

    host: str = ""
    port: int = 587
    # Upgrade the connection with STARTTLS before signing in (and fail if the server cannot).
    starttls: bool = True
    # Variables holding the sign-in name and password; unset or empty: no sign-in.
    username_env: str = "QUARTERDECK_SMTP_USERNAME"
    password_env: str = "QUARTERDECK_SMTP_PASSWORD"  # noqa: S105 (a variable name)
    sender: str = ""
    # A CA bundle (PEM) to verify the server's certificate with; "": the system's.
    ca_file: str = ""
    timeout_s: int = 10


@dataclass(frozen=True)
class ReportConfig:
    """One on-call handoff report (`[[reports]]`, docs/reports.md)."""

    name: str
    # "HH:MM" (UTC) to run it every day; "": on demand only.
    daily_at: str = ""
    period_h: int = 24
    email_to: tuple[str, ...] = ()
    webhook_url: str = ""
    # The variable holding the webhook's HMAC-SHA256 key; required with webhook_url.
    webhook_secret_env: str = "QUARTERDECK_REPORT_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
    # Attempts per delivery in all, and the wait before the second (doubling after it).
    attempts: int = 4
    retry_backoff_s: int = 60
    # Rows in each "top" list (incidents, actions, conflicts, operations).
    top: int = 10


@dataclass(frozen=True)
class ActionsConfig:
    # Service-wide actions (degrade, restore, canary, rollback) wait for a second operator.
    require_approval: bool = False
    # How long a silence made while acting lasts when the action itself has no end time.
    silence_minutes: int = 30


@dataclass(frozen=True)
class SloConfig:
    """One service's service level objectives (`[[slo]]`, docs/slo.md)."""

    service: str
    # Percent of good events over the window (availability): 99.9 leaves a 0.1 % error budget.
    objective: float = 99.9
    window_d: int = 28
    # Where good and bad events come from: probes, checks, prometheus or spans.
    sli: str = "probes"
    # A latency objective: `latency_objective` percent of events faster than `latency_ms`
    # (95 and 300 read "p95 under 300 ms"); 0 means none.
    latency_ms: float = 0.0
    latency_objective: float = 95.0

    @property
    def name(self) -> str:
        """An SLO is named by its service: one `[[slo]]` per service."""
        return self.service


@dataclass(frozen=True)
class Config:
    """The whole configuration; every section has safe defaults."""

    store: StoreConfig = field(default_factory=StoreConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    consul: ConsulConfig | None = None
    prometheus: PrometheusConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    redis: RedisConfig | None = None
    haproxy: tuple[HAProxyConfig, ...] = ()
    nginx: tuple[NginxConfig, ...] = ()
    static_services: tuple[StaticServiceConfig, ...] = ()
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    map: MapConfig = field(default_factory=MapConfig)
    probes: tuple[ProbeConfig, ...] = ()
    runbooks: RunbooksConfig = field(default_factory=RunbooksConfig)
    rules: tuple[RuleConfig, ...] = ()
    automation: AutomationConfig = field(default_factory=AutomationConfig)
    # The runbooks read from `[runbooks] file`, by name (app/runbooks/book.py).
    runbook_book: dict[str, typing.Any] = field(default_factory=dict, compare=False)
    smtp: SmtpConfig | None = None
    reports: tuple[ReportConfig, ...] = ()
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    slo: tuple[SloConfig, ...] = ()
    source_path: str = ""
    demo: bool = False

    def replace(self, **changes: typing.Any) -> Config:
        """Return a copy with some sections replaced."""
        return dataclasses.replace(self, **changes)


# section name -> (dataclass, is an array of tables, optional single table)
_SECTIONS: dict[str, tuple[type, bool]] = {
    "store": (StoreConfig, False),
    "server": (ServerConfig, False),
    "auth": (AuthConfig, False),
    "consul": (ConsulConfig, False),
    "prometheus": (PrometheusConfig, False),
    "alertmanager": (AlertmanagerConfig, False),
    "redis": (RedisConfig, False),
    "haproxy": (HAProxyConfig, True),
    "nginx": (NginxConfig, True),
    "static_services": (StaticServiceConfig, True),
    "catalog": (CatalogConfig, False),
    "collect": (CollectConfig, False),
    "leader": (LeaderConfig, False),
    "verdict": (VerdictConfig, False),
    "retention": (RetentionConfig, False),
    "otlp": (OtlpConfig, False),
    "map": (MapConfig, False),
    "probes": (ProbeConfig, True),
    "runbooks": (RunbooksConfig, False),
    "rules": (RuleConfig, True),
    "automation": (AutomationConfig, False),
    "smtp": (SmtpConfig, False),
    "reports": (ReportConfig, True),
    "actions": (ActionsConfig, False),
    "slo": (SloConfig, True),
}

_URL_SCHEMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("store", "url"): ("sqlite", "postgresql", "postgresql+psycopg"),
    ("consul", "url"): ("http", "https"),
    ("consul", "agent_url"): ("http", "https"),
    ("prometheus", "url"): ("http", "https"),
    ("alertmanager", "url"): ("http", "https"),
    ("redis", "url"): ("redis", "rediss", "unix"),
    ("haproxy", "stats_url"): ("http", "https"),
    ("haproxy", "runtime"): ("tcp", "unix"),
    ("nginx", "status_url"): ("http", "https"),
    ("probes", "url"): ("http", "https"),
    ("automation", "webhook_url"): ("http", "https"),
    ("reports", "webhook_url"): ("http", "https"),
}


def load_config(path: str | os.PathLike[str] | None = None, environ=None) -> Config:
    """Read the TOML file (if any) and the environment overrides into a Config."""
    environ = os.environ if environ is None else environ
    explicit = path is not None or "QUARTERDECK_CONFIG" in environ
    file_path = Path(path or environ.get("QUARTERDECK_CONFIG") or DEFAULT_PATH)
    raw: dict[str, typing.Any] = {}
    where = str(file_path)
    if file_path.exists():
        try:
            raw = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read: {exc}") from exc
    elif explicit:
        raise ConfigError(f"{where}: configuration file not found")
    _apply_env_overrides(raw, environ)
    return parse_config(raw, where if file_path.exists() else "(defaults)")


def parse_config(raw: dict[str, typing.Any], where: str = "(config)") -> Config:
    """Validate a decoded TOML document into a Config, naming the bad key on error."""
    values: dict[str, typing.Any] = {}
    for section, content in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}]")
        cls, many = _SECTIONS[section]
        if many:
            if isinstance(content, dict):
                content = [content]
            if not isinstance(content, list):
                raise ConfigError(f"{where}: [[{section}]] must be an array of tables")
            items = [
                _build(cls, item, f"{section}[{i}]", section, where)
                for i, item in enumerate(content)
            ]
            _check_unique_names(items, section, where)
            values[section] = tuple(items)
        else:
            values[section] = _build(cls, content, section, section, where)
    config = Config(**values, source_path=where)
    _check_consistency(config, where)
    if config.runbooks.file or config.rules:
        from app.runbooks.book import check_rules, load_runbook_file

        book = load_runbook_file(config.runbooks.file, where) if config.runbooks.file else {}
        config = dataclasses.replace(config, runbook_book=book)
        check_rules(config, where)
    return config


def _build(cls: type, content: typing.Any, label: str, section: str, where: str):
    if not isinstance(content, dict):
        raise ConfigError(f"{where}: [{label}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in content.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}' in [{label}]")
        kwargs[key] = _coerce(value, hints[key], f"[{label}] {key}", where)
        schemes = _URL_SCHEMES.get((section, key))
        if schemes and kwargs[key]:
            _check_url(kwargs[key], schemes, f"[{label}] {key}", where)
    missing = [
        f.name
        for f in known.values()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in kwargs
    ]
    if missing:
        raise ConfigError(f"{where}: [{label}] is missing required key '{missing[0]}'")
    return cls(**kwargs)


def _coerce(value: typing.Any, hint: typing.Any, label: str, where: str):
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {label} must be a list, not {_type_name(value)}")
        (item_type, _) = typing.get_args(hint)
        return tuple(_coerce(v, item_type, label, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {label} must be a table, not {_type_name(value)}")
        (_, value_type) = typing.get_args(hint)
        if value_type is typing.Any:
            return dict(value)
        return {str(k): _coerce(v, value_type, f"{label}.{k}", where) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {label} must be true or false, not {_type_name(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {label} must be an integer, not {_type_name(value)}")
        if value < 0:
            raise ConfigError(f"{where}: {label} must not be negative")
        return value
    if hint is float:
        # TOML tells 1 from 1.0; a threshold may be written either way.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {label} must be a number, not {_type_name(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {label} must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {label} must be a string, not {_type_name(value)}")
        return value
    raise ConfigError(f"{where}: {label} has an unsupported type")  # pragma: no cover


def _type_name(value: typing.Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _check_url(value: str, schemes: tuple[str, ...], label: str, where: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{where}: {label} = '{value}' must start with one of {allowed}")
    if parts.scheme in ("http", "https", "tcp", "redis", "rediss") and not parts.hostname:
        raise ConfigError(f"{where}: {label} = '{value}' has no host")
    if parts.scheme == "tcp" and parts.port is None:
        raise ConfigError(f"{where}: {label} = '{value}' has no port")


def _check_unique_names(items: list, section: str, where: str) -> None:
    seen: set[str] = set()
    for item in items:
        if not item.name.strip():
            raise ConfigError(f"{where}: [[{section}]] name must not be empty")
        if item.name in seen:
            raise ConfigError(f"{where}: [[{section}]] name '{item.name}' is used twice")
        seen.add(item.name)


def _check_consistency(config: Config, where: str) -> None:
    host, sep, port = config.server.bind.rpartition(":")
    if not sep or not _is_port(port, lowest=0) or not host:
        raise ConfigError(f"{where}: [server] bind = '{config.server.bind}' must be HOST:PORT")
    for label, proxies in (
        ("[auth] trusted_proxies", config.auth.trusted_proxies),
        ("[server] forwarded_allow_ips", config.server.forwarded_allow_ips),
    ):
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigError(
                    f"{where}: {label}: '{proxy}' is not an address or network"
                ) from exc
    if config.server.session_hours < 1:
        raise ConfigError(f"{where}: [server] session_hours must be at least 1")
    if config.auth.max_failures < 1:
        raise ConfigError(f"{where}: [auth] max_failures must be at least 1")
    if config.auth.user_max_failures < config.auth.max_failures:
        raise ConfigError(f"{where}: [auth] user_max_failures must be at least [auth] max_failures")
    if config.auth.failure_window_s < 1:
        raise ConfigError(f"{where}: [auth] failure_window_s must be at least 1")
    if config.auth.header and not config.auth.trusted_proxies:
        raise ConfigError(f"{where}: [auth] header needs [auth] trusted_proxies")
    for key in ("threads", "streams_per_user", "max_streams", "stream_recheck_s"):
        if getattr(config.server, key) < 1:
            raise ConfigError(f"{where}: [server] {key} must be at least 1")
    if not 0 < config.verdict.error_ratio < 1:
        raise ConfigError(f"{where}: [verdict] error_ratio must be between 0 and 1 (a ratio)")
    if config.verdict.min_rate_rps < 0:
        raise ConfigError(f"{where}: [verdict] min_rate_rps must be 0 or more")
    if config.collect.interval_s < 1:
        raise ConfigError(f"{where}: [collect] interval_s must be at least 1")
    if not 0.2 <= config.leader.heartbeat_s <= 60:
        raise ConfigError(f"{where}: [leader] heartbeat_s must be from 0.2 to 60 (seconds)")
    if config.otlp.max_body_mb < 1:
        raise ConfigError(f"{where}: [otlp] max_body_mb must be at least 1")
    for nginx in config.nginx:
        if not nginx.reload:
            raise ConfigError(f"{where}: [[nginx]] '{nginx.name}' reload must not be empty")
        if not nginx.test:
            raise ConfigError(
                f"{where}: [[nginx]] '{nginx.name}' test is not set and reload "
                f'{list(nginx.reload)} has no "-s reload" to replace with "-t": set test'
            )
    if config.prometheus is not None:
        _check_prometheus(config.prometheus, where)
    _check_map(config, where)
    if config.alertmanager is not None and config.alertmanager.timeout_s < 1:
        raise ConfigError(f"{where}: [alertmanager] timeout_s must be at least 1")
    for probe in config.probes:
        _check_probe(probe, where)
    for key in ("interval_s", "webhook_timeout_s"):
        if getattr(config.automation, key) < 1:
            raise ConfigError(f"{where}: [automation] {key} must be at least 1")
    _check_reports(config, where)
    if not 1 <= config.actions.silence_minutes <= 10080:
        raise ConfigError(f"{where}: [actions] silence_minutes must be from 1 to 10080")
    for slo in config.slo:
        _check_slo(slo, config, where)
    for svc in config.static_services:
        for instance in svc.instances:
            host, sep, port = instance.rpartition(":")
            if not sep or not host or not _is_port(port):
                raise ConfigError(
                    f"{where}: [[static_services]] '{svc.name}' instance '{instance}' "
                    "must be HOST:PORT"
                )


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# A PromQL duration: one or more number-unit pairs, largest unit first (1h30m, 5m, 90s).
_DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")


def _check_map(config: Config, where: str) -> None:
    section = config.map
    if not 10 <= section.node_limit <= 5000:
        raise ConfigError(f"{where}: [map] node_limit must be from 10 to 5000")
    by = section.group_by
    if not (by == "prefix" or (by.startswith(("tag:", "meta:")) and by.split(":", 1)[1])):
        raise ConfigError(
            f'{where}: [map] group_by = \'{by}\' must be "prefix", "tag:<prefix>" or "meta:<key>"'
        )
    if section.edge_query and config.prometheus is None:
        raise ConfigError(f"{where}: [map] edge_query needs a [prometheus] section to ask")
    for key in ("edge_source_label", "edge_target_label"):
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", getattr(section, key)):
            raise ConfigError(
                f"{where}: [map] {key} = '{getattr(section, key)}' is not a label name"
            )


def _check_prometheus(prom: PrometheusConfig, where: str) -> None:
    if prom.preset not in PROMQL_PRESETS:
        presets = ", ".join(f"'{p}'" for p in PROMQL_PRESETS)
        raise ConfigError(
            f"{where}: [prometheus] preset = '{prom.preset}' must be one of {presets}"
        )
    for key in (
        "service_label",
        "push_service_label",
        "push_instance_label",
        "alert_service_label",
    ):
        value = getattr(prom, key)
        if not _LABEL_NAME.fullmatch(value):
            raise ConfigError(f"{where}: [prometheus] {key} = '{value}' is not a label name")
    if not _METRIC_NAME.fullmatch(prom.push_gauge):
        raise ConfigError(
            f"{where}: [prometheus] push_gauge = '{prom.push_gauge}' is not a metric name"
        )
    if not prom.window or not _DURATION.fullmatch(prom.window):
        raise ConfigError(
            f"{where}: [prometheus] window = '{prom.window}' is not a PromQL duration (e.g. 5m)"
        )
    for key in ("rate_query", "error_ratio_query", "latency_query"):
        template = prom.template(key)
        if "{label}" not in template:
            raise ConfigError(
                f"{where}: [prometheus] {key} must aggregate by {{label}} (one query, all services)"
            )
        if key == "latency_query" and "{quantile}" not in template:
            raise ConfigError(f"{where}: [prometheus] latency_query must use {{quantile}}")
    for key in ("timeout_s", "range_timeout_s"):
        if getattr(prom, key) < 1:
            raise ConfigError(f"{where}: [prometheus] {key} must be at least 1")


_REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DAILY_AT = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
# An address as mail servers take it: something@domain, no spaces, no header breaks.
_MAIL_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+")


def _check_reports(config: Config, where: str) -> None:
    smtp = config.smtp
    if smtp is not None:
        if not smtp.host:
            raise ConfigError(f"{where}: [smtp] host must be set")
        if not _is_port(str(smtp.port)):
            raise ConfigError(f"{where}: [smtp] port must be from 1 to 65535")
        if not _MAIL_ADDRESS.fullmatch(smtp.sender):
            raise ConfigError(f"{where}: [smtp] sender = '{smtp.sender}' is not a mail address")
        if smtp.timeout_s < 1:
            raise ConfigError(f"{where}: [smtp] timeout_s must be at least 1")
    for report in config.reports:
        label = f"[[reports]] '{report.name}'"
        if not _REPORT_NAME.fullmatch(report.name):
            raise ConfigError(
                f"{where}: {label} name may hold only letters, digits, '.', '_' and '-'"
            )
        if report.daily_at and not _DAILY_AT.fullmatch(report.daily_at):
            raise ConfigError(
                f"{where}: {label} daily_at = '{report.daily_at}' must be HH:MM (UTC), e.g. 07:30"
            )
        if not 1 <= report.period_h <= 24 * 90:
            raise ConfigError(f"{where}: {label} period_h must be from 1 to 2160 (90 days)")
        for address in report.email_to:
            if not _MAIL_ADDRESS.fullmatch(address):
                raise ConfigError(f"{where}: {label} email_to: '{address}' is not a mail address")
        if report.email_to and smtp is None:
            raise ConfigError(f"{where}: {label} email_to needs an [smtp] section to send with")
        if report.webhook_url and not report.webhook_secret_env:
            raise ConfigError(f"{where}: {label} webhook_url needs webhook_secret_env")
        if not 1 <= report.attempts <= 20:
            raise ConfigError(f"{where}: {label} attempts must be from 1 to 20")
        if report.retry_backoff_s < 1:
            raise ConfigError(f"{where}: {label} retry_backoff_s must be at least 1")
        if not 1 <= report.top <= 100:
            raise ConfigError(f"{where}: {label} top must be from 1 to 100")


_PROBE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_probe(probe: ProbeConfig, where: str) -> None:
    from collectors.probes import JsonPathError, parse_json_path

    label = f"[[probes]] '{probe.name}'"
    if probe.method not in _PROBE_METHODS:
        raise ConfigError(
            f"{where}: {label} method = '{probe.method}' must be one of {', '.join(_PROBE_METHODS)}"
        )
    if probe.interval_s < 1:
        raise ConfigError(f"{where}: {label} interval_s must be at least 1")
    if not 1 <= probe.timeout_ms <= 60_000:
        raise ConfigError(f"{where}: {label} timeout_ms must be from 1 to 60000")
    if not 100 <= probe.expect_status <= 599:
        raise ConfigError(f"{where}: {label} expect_status must be an HTTP status (100-599)")
    if probe.expect_json:
        unknown = sorted(set(probe.expect_json) - {"path", "equals"})
        if unknown:
            raise ConfigError(f"{where}: {label} unknown key '{unknown[0]}' in expect_json")
        if "path" not in probe.expect_json or "equals" not in probe.expect_json:
            raise ConfigError(f"{where}: {label} expect_json needs both path and equals")
        path = probe.expect_json["path"]
        if not isinstance(path, str):
            raise ConfigError(f"{where}: {label} expect_json.path must be a string")
        try:
            parse_json_path(path)
        except JsonPathError as exc:
            raise ConfigError(f"{where}: {label} expect_json.path = '{path}': {exc}") from exc
        equals = probe.expect_json["equals"]
        if not isinstance(equals, (str, int, float, bool)):
            raise ConfigError(
                f"{where}: {label} expect_json.equals must be a string, number or boolean"
            )
    for key in ("headers", "headers_env"):
        for name in getattr(probe, key):
            if not _HEADER_NAME.fullmatch(name):
                raise ConfigError(f"{where}: {label} {key}: '{name}' is not a header name")
    for name, value in probe.headers.items():
        if "\r" in value or "\n" in value:
            raise ConfigError(f"{where}: {label} headers.{name} must be one line")
    if set(probe.headers) & set(probe.headers_env):
        both = sorted(set(probe.headers) & set(probe.headers_env))[0]
        raise ConfigError(f"{where}: {label} header '{both}' is in both headers and headers_env")


SLI_KINDS = ("probes", "checks", "prometheus", "spans")
# Where a latency objective can be measured: each event needs its own duration.
_LATENCY_SLIS = ("probes", "spans")


def _check_slo(slo: SloConfig, config: Config, where: str) -> None:
    label = f"[[slo]] '{slo.service}'"
    if not slo.service.strip():
        raise ConfigError(f"{where}: [[slo]] service must not be empty")
    if slo.sli not in SLI_KINDS:
        raise ConfigError(
            f"{where}: {label} sli = '{slo.sli}' must be one of {', '.join(SLI_KINDS)}"
        )
    for key in ("objective", "latency_objective"):
        if not 0 < getattr(slo, key) < 100:
            raise ConfigError(f"{where}: {label} {key} must be a percentage above 0 and below 100")
    if not 1 <= slo.window_d <= 400:
        raise ConfigError(f"{where}: {label} window_d must be from 1 to 400 days")
    if slo.sli == "prometheus" and config.prometheus is None:
        raise ConfigError(f"{where}: {label} sli = 'prometheus' needs a [prometheus] section")
    if slo.sli == "probes" and not any(p.service == slo.service for p in config.probes):
        raise ConfigError(
            f"{where}: {label} sli = 'probes' but no [[probes]] entry has service = '{slo.service}'"
        )
    if slo.latency_ms < 0:
        raise ConfigError(f"{where}: {label} latency_ms must not be negative")
    if slo.latency_ms and slo.sli not in _LATENCY_SLIS:
        raise ConfigError(
            f"{where}: {label} latency_ms needs sli = 'probes' or 'spans' "
            f"(each event's own duration); '{slo.sli}' has none"
        )


def _is_port(text: str, lowest: int = 1) -> bool:
    # str.isdigit() also accepts "²", which int() then refuses.
    return text.isascii() and text.isdigit() and len(text) <= 5 and lowest <= int(text) < 65536


def _secret_variable_names(raw: dict[str, typing.Any]) -> set[str]:
    """Names of the variables that `*_env` keys point at (their defaults included)."""
    names = {"QUARTERDECK_CONFIG"}
    for section, (cls, _many) in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name.endswith("_env") and isinstance(f.default, str):
                names.add(f.default)
        content = raw.get(section)
        for table in content if isinstance(content, list) else [content]:
            if isinstance(table, dict):
                names.update(
                    v for k, v in table.items() if k.endswith("_env") and isinstance(v, str)
                )
                for k, v in table.items():
                    if k.endswith("_env") and isinstance(v, dict):  # headers_env
                        names.update(x for x in v.values() if isinstance(x, str))
    return names


def _apply_env_overrides(raw: dict[str, typing.Any], environ) -> None:
    """Apply QUARTERDECK_<SECTION>_<KEY> variables on top of the file."""
    # A secret may well be called QUARTERDECK_CONSUL_TOKEN: it is a value, not an override.
    secrets = _secret_variable_names(raw)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in secrets:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section, (cls, many) in _SECTIONS.items():
            if many or not rest.startswith(section + "_"):
                continue
            key = rest[len(section) + 1 :]
            hints = typing.get_type_hints(cls)
            if key not in hints:
                raise ConfigError(f"environment {name}: unknown key '{key}' in [{section}]")
            raw.setdefault(section, {})
            if not isinstance(raw[section], dict):
                raise ConfigError(f"environment {name}: [{section}] is not a table")
            raw[section][key] = _parse_env_value(value, hints[key], name)
            break


def _parse_env_value(value: str, hint: typing.Any, name: str) -> typing.Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment {name}: not a JSON list: {exc}") from exc
            return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    if hint is bool:
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"environment {name}: '{value}' is not true or false")
    if hint is int:
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"environment {name}: '{value}' is not an integer") from exc
    if hint is float:
        try:
            return float(value)
        except ValueError as exc:
            raise ConfigError(f"environment {name}: '{value}' is not a number") from exc
    return value
