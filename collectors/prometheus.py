"""Read Prometheus: RED per service, the push gauge, scrape targets and firing alerts.

A pass costs a constant number of requests, however many services there are: each figure is
one PromQL query aggregated `by (<service label>)` (rate, error ratio, p50, p95, the push
gauge), plus `/api/v1/targets` and `/api/v1/alerts`. Nothing here keeps history: charts ask
Prometheus on demand through `PrometheusReader.range`.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from collectors.base import SourceUnavailable, SourceWarning
from collectors.metrics import (
    AlertsUpdate,
    FiringAlert,
    PushGaugeUpdate,
    PushGaugeValue,
    RedUpdate,
    ScrapeTargetState,
    ServiceRed,
    TargetsUpdate,
    parse_time,
)

QUANTILES = {"p50_ms": 0.5, "p95_ms": 0.95}
# One thread per request of a pass: five queries, targets, alerts.
PARALLEL_REQUESTS = 7
# Listed one by one on the Sources page; beyond that, a count.
MAX_TARGET_WARNINGS = 10


def promql_string(value: str) -> str:
    """Quote a label value as a PromQL string literal (double quotes, backslash escapes)."""
    return json.dumps(value, ensure_ascii=False)


def fill_template(template: str, label: str, window: str, quantile: float | None = None) -> str:
    """Fill a PromQL template's {label}, {window} and {quantile}; other braces stay PromQL's."""
    text = template.replace("{label}", label).replace("{window}", window)
    if quantile is not None:
        text = text.replace("{quantile}", repr(quantile))
    return text


def only_label_value(query: str, label: str, value: str) -> str:
    """Narrow an aggregated query to the series whose `label` is `value`.

    `label_replace(vector(1), ...)` makes one series carrying just that label; `and on` keeps
    the query's series that match it. Works for any template, and the value is escaped: `$`
    doubled for label_replace's replacement, then quoted as a PromQL string.
    """
    replacement = promql_string(value.replace("$", "$$"))
    selector = f'label_replace(vector(1), "{label}", {replacement}, "", "")'
    return f"({query}) and on ({label}) {selector}"


def promql_regex_literal(value: str) -> str:
    """Escape a value for a PromQL (RE2) regex: every ASCII character but a letter or digit
    gets a backslash, which RE2 reads as that character itself."""
    return "".join(f"\\{c}" if c.isascii() and not c.isalnum() else c for c in value)


# The label `only_label_values` marks the listed series with (none of ours is named so).
LISTED_LABEL = "qd_listed"


def only_label_values(query: str, label: str, values: Sequence[str]) -> str:
    """Narrow an aggregated query to the series whose `label` is one of `values`, in one query.

    `label_replace` adds `qd_listed="1"` to the series whose label fully matches the
    alternation of the escaped values (it leaves the others unchanged); `unless on (qd_listed)
    vector(1)` then drops every series without the mark.
    """
    pattern = "|".join(promql_regex_literal(v) for v in values)
    marked = (
        f'label_replace(({query}), {promql_string(LISTED_LABEL)}, "1", '
        f"{promql_string(label)}, {promql_string(pattern)})"
    )
    return f"{marked} unless on ({LISTED_LABEL}) vector(1)"


def sample_value(text: object) -> float | None:
    """Return a sample's value, or None for NaN and ±Inf (Prometheus sends them as strings)."""
    if not isinstance(text, str):
        raise ValueError(f"a sample value is {type(text).__name__}, not a string")
    value = float(text)  # accepts "NaN", "+Inf", "-Inf"; raises on anything else
    return value if math.isfinite(value) else None


def _api_error_reason(exc: PrometheusApiClientException) -> str:
    """Extract Prometheus's own error text from the client's exception message."""
    message = str(exc)
    match = re.match(r"HTTP Status Code (\d+) \((b['\"].*['\"])\)$", message, re.DOTALL)
    if match is None:
        return message[:300]
    status, body = match.group(1), match.group(2)
    try:
        envelope = json.loads(ast.literal_eval(body))
        return f"HTTP {status}: {envelope.get('errorType', '')}: {envelope.get('error', '')}"[:500]
    except (ValueError, SyntaxError, AttributeError, TypeError):
        return f"HTTP {status}"


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (time, value) points; NaN/Inf are None."""

    labels: dict[str, str]
    points: tuple[tuple[datetime, float | None], ...]


class PrometheusReader:
    """Instant and range queries against Prometheus, every failure a SourceUnavailable."""

    def __init__(self, url: str, timeout_s: float, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        # No retries: a pass that fails is retried by the next pass, not inside this one.
        self.client = PrometheusConnect(
            url=self.url, retry=Retry(total=0), timeout=timeout_s, session=self.session
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self.session.close()

    def _call(self, what: str, request: Callable[[], object]) -> object:
        try:
            return request()
        except PrometheusApiClientException as exc:
            raise SourceUnavailable(f"Prometheus refused {what}: {_api_error_reason(exc)}") from exc
        except requests.exceptions.JSONDecodeError as exc:
            raise SourceUnavailable(f"Prometheus answered {what} with no JSON: {exc}") from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"cannot reach Prometheus at {self.url}: {type(exc).__name__}"
            ) from exc
        except (KeyError, TypeError) as exc:  # the client indexes data.result itself
            raise SourceUnavailable(f"Prometheus answered {what} malformed: {exc!r}") from exc

    def instant(
        self, what: str, query: str, at: datetime | None = None
    ) -> list[tuple[dict[str, str], float | None]]:
        """Run an instant query (now, or `at`) returning a vector; (labels, value) per series."""
        params = {"time": at.timestamp()} if at is not None else None
        result = self._call(what, lambda: self.client.custom_query(query, params=params))
        try:
            return [(_labels(item), sample_value(item["value"][1])) for item in _items(result)]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SourceUnavailable(f"Prometheus answered {what} malformed: {exc}") from exc

    def range(self, query: str, start: datetime, end: datetime, step: str | float) -> list[Series]:
        """Run a range query (for a chart) and return its series; uses the reader's timeout."""
        result = self._call(
            "a range query", lambda: self.client.custom_query_range(query, start, end, step)
        )
        try:
            return [
                Series(
                    _labels(item),
                    tuple(
                        (datetime.fromtimestamp(float(t), UTC), sample_value(v))
                        for t, v in item["values"]
                    ),
                )
                for item in _items(result)
            ]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SourceUnavailable(f"Prometheus answered a range query malformed: {exc}") from exc

    def api(self, endpoint: str) -> object:
        """GET /api/v1/<endpoint> and return its `data`, checking the envelope."""

        def fetch() -> object:
            response = self.session.get(f"{self.url}/api/v1/{endpoint}", timeout=self.timeout_s)
            envelope = response.json()
            if not isinstance(envelope, dict):
                raise TypeError("the answer is not a JSON object")
            if response.status_code != 200 or envelope.get("status") != "success":
                reason = f"{envelope.get('errorType', '')}: {envelope.get('error', '')}"
                raise SourceUnavailable(
                    f"Prometheus refused /api/v1/{endpoint}: HTTP {response.status_code} {reason}"
                )
            return envelope["data"]

        return self._call(f"/api/v1/{endpoint}", fetch)


def _items(result: object) -> list[dict]:
    if not isinstance(result, list) or not all(isinstance(i, dict) for i in result):
        raise TypeError("the result is not a list of series")
    return result


def _labels(item: dict) -> dict[str, str]:
    metric = item.get("metric", {})
    if not isinstance(metric, dict):
        raise TypeError("a series' metric is not an object")
    return {str(k): str(v) for k, v in metric.items()}


class PrometheusCollector:
    """Collect RED, the push gauge, targets and firing alerts in a constant number of requests."""

    kind = "prometheus"

    def __init__(
        self,
        reader: PrometheusReader,
        *,
        name: str = "prometheus",
        service_label: str = "service",
        window: str = "5m",
        templates: dict[str, str],
        push_gauge: str = "push_connections_active",
        push_service_label: str = "service",
        push_instance_label: str = "instance",
        alert_service_label: str = "service",
        clock: Callable[[], datetime],
    ) -> None:
        self.name = name
        self.reader = reader
        self.service_label = service_label
        self.window = window
        self.templates = templates
        self.push_gauge = push_gauge
        self.push_service_label = push_service_label
        self.push_instance_label = push_instance_label
        self.alert_service_label = alert_service_label
        self.clock = clock
        self._warnings: list[SourceWarning] = []
        # Made by the first pass: the registry also builds collectors just to list sources.
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Stop the request threads and release the HTTP connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.reader.close()

    @classmethod
    def from_config(cls, config, clock: Callable[[], datetime]) -> PrometheusCollector:
        """Build from a [prometheus] section (app.config.PrometheusConfig)."""
        keys = ("rate_query", "error_ratio_query", "latency_query")
        return cls(
            PrometheusReader(config.url, config.timeout_s),
            service_label=config.service_label,
            window=config.window,
            templates={key: config.template(key) for key in keys},
            push_gauge=config.push_gauge,
            push_service_label=config.push_service_label,
            push_instance_label=config.push_instance_label,
            alert_service_label=config.alert_service_label,
            clock=clock,
        )

    def queries(self) -> dict[str, str]:
        """Return the PromQL of one pass by figure: the same few queries for any fleet size."""
        label, window = self.service_label, self.window
        queries = {
            "rate_rps": fill_template(self.templates["rate_query"], label, window),
            "error_ratio": fill_template(self.templates["error_ratio_query"], label, window),
        }
        latency = self.templates["latency_query"]
        for figure, quantile in QUANTILES.items():
            queries[figure] = fill_template(latency, label, window, quantile)
        queries["push_gauge"] = self.push_gauge
        return queries

    def collect(self) -> list:
        """Read one pass; raise SourceUnavailable if any part cannot be read."""
        observed_at = self.clock()
        queries = self.queries()
        # The requests are independent: sent at once, a pass takes as long as the slowest.
        reads: dict[str, Callable[[], object]] = {
            name: partial(self.reader.instant, name, query) for name, query in queries.items()
        }
        reads["targets"] = self._targets
        reads["alerts"] = self._alerts
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix=self.name)
        futures = {name: self._pool.submit(read) for name, read in reads.items()}
        answers = {name: future.result() for name, future in futures.items()}
        figures: dict[str, dict[str, float | None]] = {}
        for figure in ("rate_rps", "error_ratio", *QUANTILES):
            for labels, value in answers[figure]:
                service = labels.get(self.service_label)
                if not service:
                    continue  # series without the label: not attributable to a service
                if figure in QUANTILES and value is not None:
                    value *= 1000.0  # seconds -> milliseconds
                figures.setdefault(service, {})[figure] = value
        red = RedUpdate(
            observed_at,
            tuple(ServiceRed(service, **values) for service, values in sorted(figures.items())),
        )
        push = PushGaugeUpdate(
            observed_at, self.push_gauge, self._push_instances(answers["push_gauge"])
        )
        targets = TargetsUpdate(observed_at, answers["targets"])
        alerts = AlertsUpdate(observed_at, answers["alerts"])
        self._warnings = _target_warnings(targets.targets)
        return [red, push, targets, alerts]

    def warnings(self) -> list[SourceWarning]:
        """Scrape targets that are down, from the last pass."""
        return list(self._warnings)

    def _push_instances(self, series) -> tuple[PushGaugeValue, ...]:
        totals: dict[tuple[str, str], float] = {}
        for labels, value in series:
            service = labels.get(self.push_service_label)
            # Prometheus renames a scraped `instance` label to `exported_instance` (honor_labels
            # off): the application's own instance name is that one.
            instance = labels.get(f"exported_{self.push_instance_label}") or labels.get(
                self.push_instance_label
            )
            if not service or not instance or value is None:
                continue
            totals[(service, instance)] = totals.get((service, instance), 0.0) + value
        return tuple(PushGaugeValue(s, i, v) for (s, i), v in sorted(totals.items()))

    def _targets(self) -> tuple[ScrapeTargetState, ...]:
        data = self.reader.api("targets?state=active")
        try:
            active = data["activeTargets"]
            targets = []
            for t in active:
                labels = {str(k): str(v) for k, v in t.get("labels", {}).items()}
                targets.append(
                    ScrapeTargetState(
                        job=labels.get("job", ""),
                        instance=labels.get("instance", ""),
                        service=labels.get(self.service_label, ""),
                        health=str(t.get("health", "unknown")),
                        last_error=str(t.get("lastError", "")),
                        scrape_url=str(t.get("scrapeUrl", "")),
                        last_scrape_at=parse_time(t.get("lastScrape")),
                    )
                )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            reason = f"Prometheus answered /api/v1/targets malformed: {exc}"
            raise SourceUnavailable(reason) from exc
        return tuple(sorted(targets, key=lambda t: (t.job, t.instance)))

    def _alerts(self) -> tuple[FiringAlert, ...]:
        data = self.reader.api("alerts")
        try:
            alerts = []
            for a in data["alerts"]:
                if a.get("state") != "firing":
                    continue  # pending alerts have not fired yet
                labels = {str(k): str(v) for k, v in a["labels"].items()}
                annotations = {str(k): str(v) for k, v in (a.get("annotations") or {}).items()}
                alerts.append(
                    FiringAlert(
                        name=labels.get("alertname", ""),
                        labels=labels,
                        service=labels.get(self.alert_service_label, ""),
                        annotations=annotations,
                        state="firing",
                        active_at=parse_time(a.get("activeAt")),
                    )
                )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            reason = f"Prometheus answered /api/v1/alerts malformed: {exc}"
            raise SourceUnavailable(reason) from exc
        return tuple(alerts)


def _target_warnings(targets: Sequence[ScrapeTargetState]) -> list[SourceWarning]:
    down = [t for t in targets if t.health == "down"]
    warnings = [
        SourceWarning(
            "target_down",
            f"scrape target {t.job}/{t.instance} is down: {t.last_error or 'no reason given'}",
            read="/api/v1/targets",
        )
        for t in down[:MAX_TARGET_WARNINGS]
    ]
    if len(down) > MAX_TARGET_WARNINGS:
        more = len(down) - MAX_TARGET_WARNINGS
        warnings.append(
            SourceWarning("target_down", f"{more} more scrape targets are down", "/api/v1/targets")
        )
    return warnings


# -- charts: read on demand, never stored ------------------------------------------------------


def chart_step(span: timedelta, points: int = 60) -> str:
    """Return a range-query step giving about `points` points over `span` (at least 1 s)."""
    return f"{max(int(span.total_seconds() // points), 1)}s"


def push_connections_by_service(
    reader: PrometheusReader,
    config,
    now: datetime,
    span: timedelta = timedelta(hours=1),
    service: str | None = None,
) -> dict[str, list[tuple[datetime, float | None]]]:
    """Return the push gauge summed per service over the last `span` (one range query)."""
    label = config.push_service_label
    query = f"sum by ({label}) ({config.push_gauge})"
    if service is not None:
        query = only_label_value(query, label, service)
    series = reader.range(query, now - span, now, chart_step(span))
    return {s.labels.get(label, ""): list(s.points) for s in series if s.labels.get(label)}


def service_red_sparkline(
    reader: PrometheusReader,
    config,
    service: str,
    now: datetime,
    span: timedelta = timedelta(hours=1),
) -> dict[str, list[tuple[datetime, float | None]]]:
    """Return one service's rate, error ratio and p95 over the last `span` (three range queries)."""
    label, window = config.service_label, config.window
    queries = {
        "rate_rps": fill_template(config.template("rate_query"), label, window),
        "error_ratio": fill_template(config.template("error_ratio_query"), label, window),
        "p95_ms": fill_template(config.template("latency_query"), label, window, 0.95),
    }
    step = chart_step(span)
    lines: dict[str, list[tuple[datetime, float | None]]] = {}
    for figure, query in queries.items():
        series = reader.range(only_label_value(query, label, service), now - span, now, step)
        points = list(series[0].points) if series else []
        if figure == "p95_ms":
            points = [(t, None if v is None else v * 1000.0) for t, v in points]
        lines[figure] = points
    return lines


# The figures the Overview draws for each service it lists: requests/s and the error ratio.
OVERVIEW_SPARKLINES = ("rate_rps", "error_ratio")


def services_red_sparklines(
    reader: PrometheusReader,
    config,
    services: Sequence[str],
    now: datetime,
    span: timedelta = timedelta(hours=1),
) -> dict[str, dict[str, list[tuple[datetime, float | None]]]]:
    """Return the listed services' rate and error ratio over the last `span`, figure ->
    service -> points: one range query per figure, however many services are listed."""
    label, window = config.service_label, config.window
    queries = {
        "rate_rps": fill_template(config.template("rate_query"), label, window),
        "error_ratio": fill_template(config.template("error_ratio_query"), label, window),
    }
    step = chart_step(span)
    lines: dict[str, dict[str, list[tuple[datetime, float | None]]]] = {}
    for figure in OVERVIEW_SPARKLINES:
        query = only_label_values(queries[figure], label, services)
        series = reader.range(query, now - span, now, step)
        lines[figure] = {s.labels[label]: list(s.points) for s in series if label in s.labels}
    return lines
