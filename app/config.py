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
class VerdictConfig:
    # Above this error ratio (0-1) Prometheus disagrees with passing checks ...
    error_ratio: float = 0.05
    # ... once the service serves at least this many requests a second.
    min_rate_rps: float = 0.1


@dataclass(frozen=True)
class RetentionConfig:
    spans_h: int = 72
    samples_d: int = 14
    transitions_d: int = 400
    audit_d: int = 0


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
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
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
    "verdict": (VerdictConfig, False),
    "retention": (RetentionConfig, False),
}

_URL_SCHEMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("store", "url"): ("sqlite", "postgresql", "postgresql+psycopg"),
    ("consul", "url"): ("http", "https"),
    ("prometheus", "url"): ("http", "https"),
    ("alertmanager", "url"): ("http", "https"),
    ("redis", "url"): ("redis", "rediss", "unix"),
    ("haproxy", "stats_url"): ("http", "https"),
    ("haproxy", "runtime"): ("tcp", "unix"),
    ("nginx", "status_url"): ("http", "https"),
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
    if config.alertmanager is not None and config.alertmanager.timeout_s < 1:
        raise ConfigError(f"{where}: [alertmanager] timeout_s must be at least 1")
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
