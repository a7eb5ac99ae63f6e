"""`quarterdeck demo`: the real dashboard on a fresh SQLite store, watching a real demo fleet."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from app.config import Config, load_config

log = logging.getLogger(__name__)

DEMO_ADMIN = "admin"
CONFIG_NAME = "quarterdeck.toml"
RUNBOOKS_NAME = "runbooks.yaml"
# The demo's runbooks, two rules that only propose (an operator approves: docs/runbooks.md),
# SLOs for orders and payments, and an on-demand handoff report.
DEMO_RUNBOOKS = """\
runbooks:
  evacuate:
    description: Take an instance out gently - Consul first, then the balancers
    steps:
      - check: other_instances_healthy
      - action: drain
        only: [consul]
      - action: drain
        only: [haproxy]
      - wait_for: no_push_connections
        timeout_s: 60
      - action: drain
        only: [nginx]
  bring-back:
    description: Put a drained instance back everywhere
    steps:
      - action: ready
  roll-back:
    description: Send the service's traffic back to its previous release
    target: service
    steps:
      - action: rollback
"""
DEMO_OPERATIONS = """
[runbooks]
file = "runbooks.yaml"

[[rules]]
name = "critical-but-serving"
when = "instance_critical_with_traffic"
for_s = 30
runbook = "evacuate"
mode = "propose"

[[rules]]
name = "bad-release"
when = "release_worse"
for_s = 30
runbook = "roll-back"
mode = "propose"

[[slo]]
service = "orders"
objective = 99.0
sli = "spans"
latency_ms = 300
latency_objective = 95.0

[[slo]]
service = "payments"
objective = 99.5
sli = "checks"

[[reports]]
name = "handoff"
period_h = 12
"""
FLEET_SERVICES = "gateway, orders, payments, inventory and push"


def banner(running: list[str], missing: list[str]) -> str:
    """Say what in this demo is real and what is simulated."""
    tools = f", behind and scraped by {' and '.join(running)}" if running else ""
    absent = f" Not installed here: {', '.join(missing)} (see Sources)." if missing else ""
    return (
        f"Demo: {FLEET_SERVICES} are real processes on loopback{tools}, opening with a "
        "scripted night (a slow dependency, a failing instance, a retry storm, a bad canary), "
        "then a real incident every half minute or so, and traces sent by the fleet itself "
        "with the OpenTelemetry SDK. "
        "The Consul agent is simulated (an in-process double of its "
        "HTTP API, which runs their checks) and the store is a throw-away SQLite file."
        f"{absent} Against a real fleet only the config changes."
    )


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(value)


def write_demo_config(workdir: Path, bind: str, consul_url: str, sources: str = "") -> Path:
    """Write the demo's configuration file into its folder and return the file's path.

    `sources` holds the TOML sections of the fleet's own tools (Prometheus, HAProxy, nginx).
    """
    path = workdir / CONFIG_NAME
    (workdir / RUNBOOKS_NAME).write_text(DEMO_RUNBOOKS, encoding="utf-8")
    store_url = f"sqlite:///{workdir / 'quarterdeck-demo.db'}"
    path.write_text(
        "# Written by `quarterdeck demo` for this run: the CLI reads it through\n"
        "# QUARTERDECK_CONFIG while the demo runs (the simulated Consul goes with it).\n"
        f"[store]\nurl = {_toml_string(store_url)}\n\n"
        f"[server]\nbind = {_toml_string(bind)}\n"
        "# Plain HTTP on loopback, where a Secure cookie would not be sent back.\n"
        "cookie_secure = false\n\n"
        f"[consul]\nurl = {_toml_string(consul_url)}\n"
        'token_env = "QUARTERDECK_DEMO_CONSUL_TOKEN"\n\n'
        "[[static_services]]\n"
        'name = "legacy-billing"\n'
        'instances = ["127.0.0.1:9301", "127.0.0.1:9302"]\n'
        'tags = ["static", "version=2024.3"]\n'
        + DEMO_OPERATIONS
        + (f"\n{sources}" if sources else ""),
        encoding="utf-8",
    )
    return path


def traces_url(config: Config) -> str:
    """Return where the fleet sends its traces: this Quarterdeck's `POST /v1/traces`."""
    host, _, port = config.server.bind.rpartition(":")
    # A wildcard bind is reached on loopback, where the fleet runs.
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/v1/traces"


def demo_config(config_path: Path) -> Config:
    """Read the demo's own file (environment overrides apply, as for any config)."""
    return load_config(config_path).replace(demo=True)


def cli_command() -> str:
    """Return how to call this installation's `quarterdeck`, relative when it is nearby."""
    script = Path(sys.executable).parent / "quarterdeck"
    if not script.exists():
        return "quarterdeck"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def run_demo(bind: str, keep: bool = False) -> int:
    """Start the simulated fleet, create a one-time admin and serve the dashboard.

    Everything lives in one temporary folder (config file, SQLite store), removed on exit
    unless `keep`.
    """
    # Sign-ins need not outlive the demo: a fresh session key each run, unless one is set.
    os.environ.setdefault("QUARTERDECK_SECRET_KEY", secrets.token_hex(32))
    workdir = Path(tempfile.mkdtemp(prefix="quarterdeck-demo-"))
    # SIGTERM (a service manager, `kill`) ends the demo like Ctrl-C: through the clean-up.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _serve_demo(workdir, bind, keep)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if keep:
            print(f"  demo folder kept: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"  demo folder removed: {workdir}", flush=True)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)


def _serve_demo(workdir: Path, bind: str, keep: bool) -> int:
    from app.auth.accounts import create_user
    from app.cli import open_quarterdeck
    from app.serving import serve_quarterdeck
    from demo.consul import ConsulDouble
    from demo.fleet.supervisor import DemoFleet
    from demo.fleet.topology import FLEET, release_record
    from demo.night import IncidentNight
    from demo.weather import DemoWeather

    consul = ConsulDouble()
    started_at = datetime.now(UTC)
    for service in FLEET:
        consul.kv_put(f"quarterdeck/releases/{service.name}", release_record(service, started_at))
    consul.start()
    fleet = night = weather = qd = None
    try:
        # Planned first (ports, config files), started in the background: the dashboard comes
        # up at once and shows the instances as they register.
        fleet = DemoFleet(workdir / "fleet", consul.url)
        config_path = write_demo_config(workdir, bind, consul.url, fleet.quarterdeck_config())
        config = demo_config(config_path)
        # The fleet sends its traces to this Quarterdeck's own OTLP ingest, like a real fleet.
        fleet.traces_url = traces_url(config)
        # With an ingest token set, the fleet sends it (through its exporters' environment).
        fleet.traces_token = os.environ.get(config.otlp.token_env) or None
        fleet.start()
        # The scripted night first, then random weather that spares what the night holds.
        night = IncidentNight(fleet, consul)
        weather = DemoWeather(fleet, consul, opening=False, spare=night.holding)
        night.then = weather.start
        night.start()
        qd = open_quarterdeck(config, migrate=True)
        password = secrets.token_urlsafe(12)
        with qd.store.session(write=True) as db:
            create_user(db, DEMO_ADMIN, "admin", password)
        host, _, port = config.server.bind.rpartition(":")
        leaving = "kept on exit (--keep)" if keep else "removed on exit unless --keep"
        print(
            "\n"
            f"  Quarterdeck demo: http://{host}:{port}/\n"
            f"  sign in as '{DEMO_ADMIN}' with the one-time password: {password}\n"
            f"  simulated Consul agent at {consul.url}\n"
            f"{_fleet_lines(fleet)}"
            f"  config and store in {workdir} ({leaving})\n"
            "  the command line against this demo, e.g. an API token:\n"
            f"    QUARTERDECK_CONFIG={config_path} {cli_command()} token create me --role viewer\n",
            flush=True,
        )
        running = [name for name in ("haproxy", "nginx", "prometheus") if name in fleet.binaries]
        return serve_quarterdeck(qd, banner=banner(running, fleet.missing))
    finally:
        if night is not None:
            night.stop()
        if weather is not None:
            weather.stop()
        if fleet is not None:
            fleet.stop()
        consul.stop()
        if qd is not None:
            qd.store.dispose()


def _fleet_lines(fleet) -> str:
    """The banner lines that say where the fleet and its tools are."""
    from demo.fleet.tools import TOOL_SPECS

    lines = [
        f"  the fleet ({FLEET_SERVICES}): gateway at {', '.join(fleet.gateway_urls())}, "
        f"push at {', '.join(fleet.push_urls())}",
        f"  put an instance in fault: echo unhealthy > {fleet.faults_dir}/orders-1 "
        "(rm the file to heal it)",
    ]
    if fleet.traces_url:
        lines.append(f"  the fleet sends its traces (OTLP/HTTP) to {fleet.traces_url}")
    if "prometheus" in fleet.binaries:
        lines.append(f"  Prometheus at {fleet.prometheus_url}/")
    if "haproxy" in fleet.binaries:
        lines.append(f"  HAProxy stats at {fleet.haproxy_stats_url.removesuffix(';csv')}")
    if "redis-server" in fleet.binaries:
        lines.append(f"  Redis (orders' idempotency keys, event stream) at {fleet.redis_url}")
    for name in fleet.missing:
        spec = TOOL_SPECS[name]
        lines.append(f"  not installed: {name} ({spec.gives}): sudo apt-get install {spec.package}")
    return "".join(f"{line}\n" for line in lines)
