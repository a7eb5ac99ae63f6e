"""The Prometheus metrics an instance exposes on /metrics, with OpenTelemetry's names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

# OpenTelemetry's advised buckets for http.server.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class InstanceMetrics:
    """One instance's registry: server and client request durations, push connections.

    `service` and `instance` are labels on every series, the same values the Prometheus scrape
    config gives the target, so the series read the same with or without `honor_labels`.
    """

    def __init__(self, service: str, instance: str) -> None:
        self.service = service
        self.instance = instance
        self.registry = CollectorRegistry()
        self.server_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            [
                "service",
                "instance",
                "http_route",
                "http_request_method",
                "http_response_status_code",
            ],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.client_duration = Histogram(
            "http_client_request_duration_seconds",
            "Duration of HTTP client requests.",
            [
                "service",
                "instance",
                "server_address",
                "server_port",
                "http_request_method",
                "http_response_status_code",
            ],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.push_connections = Gauge(
            "push_connections_active",
            "WebSocket connections this instance holds open.",
            ["service", "instance"],
            registry=self.registry,
        )

    def served(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request this instance answered."""
        self.server_duration.labels(
            self.service, self.instance, route, method, str(status)
        ).observe(seconds)

    def called(self, address: str, port: int, method: str, status: int, seconds: float) -> None:
        """Count one request this instance made (status 0: no answer)."""
        self.client_duration.labels(
            self.service, self.instance, address, str(port), method, str(status)
        ).observe(seconds)

    def connections(self) -> Gauge:
        """Return this instance's push_connections_active child."""
        return self.push_connections.labels(self.service, self.instance)
