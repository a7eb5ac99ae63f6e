"""The demo's real fleet: HTTP and WebSocket services on loopback, their balancers and traffic.

Each instance is its own OS process that registers itself in the Consul double, answers real
health checks, exposes Prometheus metrics and sends its traces with the OpenTelemetry SDK
(tracing.py); `DemoFleet` (supervisor.py) starts and stops them
with HAProxy, nginx and Prometheus where those are installed.
"""
