"""Quarterdeck's own Prometheus metrics, in a registry of its own (no hidden global)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The process's own metrics, exposed at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector_duration = Histogram(
            "quarterdeck_collector_duration_seconds",
            "Time one collection pass against a source took.",
            ["source", "kind"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.collector_errors = Counter(
            "quarterdeck_collector_errors_total",
            "Collection passes that failed, by source.",
            ["source", "kind"],
            registry=self.registry,
        )
        self.collector_runs = Counter(
            "quarterdeck_collector_runs_total",
            "Collection passes, by source.",
            ["source", "kind"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "quarterdeck_leader",
            "1 while this replica holds the leader lock (runs the collectors and jobs), else 0.",
            registry=self.registry,
        )
        self.leader_changes = Counter(
            "quarterdeck_leader_changes_total",
            "Times this replica took or lost the leader lock, by what happened.",
            ["change"],
            registry=self.registry,
        )
        self.live_streams = Gauge(
            "quarterdeck_live_streams",
            "Live-update streams (GET /events) open now.",
            registry=self.registry,
        )
        self.live_streams_refused = Counter(
            "quarterdeck_live_streams_refused_total",
            "Live streams refused with 429, by the limit they met.",
            ["limit"],
            registry=self.registry,
        )
        self.live_streams_ended = Counter(
            "quarterdeck_live_streams_ended_total",
            "Live streams the server ended because their caller may no longer stream, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.ingest_spans = Counter(
            "quarterdeck_ingest_spans_total",
            "Spans received on POST /v1/traces, by outcome (accepted, rejected, duplicate).",
            ["outcome"],
            registry=self.registry,
        )
        self.ingest_requests = Counter(
            "quarterdeck_ingest_requests_total",
            "OTLP export requests on POST /v1/traces, by the status answered.",
            ["status"],
            registry=self.registry,
        )
