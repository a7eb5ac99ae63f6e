"""DemoFleet: plan the fleet (ports, configs), start it in the background, tend it, stop it."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from demo.fleet.children import Child, python_argv, stop_all
from demo.fleet.configs import (
    HAProxyPorts,
    NginxPorts,
    haproxy_config,
    nginx_config,
    nginx_upstreams,
    prometheus_config,
    prometheus_rules,
    prometheus_targets,
)
from demo.fleet.faults import clear_fault, write_fault
from demo.fleet.nginx_drain import mark_down
from demo.fleet.tools import TOOLS, answers, find_tool, free_ports, nginx_worker_user
from demo.fleet.topology import LOOPBACK, PlannedInstance, instance_count, plan_instances

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
TEND_INTERVAL_S = 0.5


class DemoFleet:
    """The real fleet of the demo, with HAProxy, nginx and Prometheus where installed.

    Construction plans everything (free ports, configuration files in `folder`) without
    starting anything, so Quarterdeck's configuration can name the sources first; `start()`
    then brings the processes up in a background thread and returns at once.
    """

    def __init__(
        self,
        folder: Path,
        consul_url: str,
        *,
        tools: Sequence[str] = TOOLS,
        check_interval: str = "5s",
        scrape_interval: str = "5s",
        clients: int = 300,
        rps: float = 3.0,
        mean_session_s: float = 120.0,
        restart_after_s: float = 20.0,
        traces_url: str | None = None,
        traces_token: str | None = None,
    ) -> None:
        self.folder = folder
        self.consul_url = consul_url
        self.check_interval = check_interval
        self.scrape_interval = scrape_interval
        self.clients = clients
        self.rps = rps
        self.mean_session_s = mean_session_s
        self.restart_after_s = restart_after_s
        self.traces_url = traces_url
        self.traces_token = traces_token
        self.binaries = {name: path for name in tools if (path := find_tool(name))}
        self.missing = [name for name in TOOLS if name not in self.binaries]
        ports = free_ports(instance_count() + 9)
        self.instances = plan_instances(ports[: instance_count()])
        extra = iter(ports[instance_count() :])
        self.haproxy_ports = HAProxyPorts(next(extra), next(extra), next(extra), next(extra))
        self.nginx_ports = NginxPorts(next(extra), next(extra))
        self.prometheus_port = next(extra)
        self.redis_port = next(extra)
        self.haproxy_ports = dataclasses.replace(self.haproxy_ports, orders=next(extra))
        self.redis_dir = folder / "redis"
        self.faults_dir = folder / "faults"
        self.logs_dir = folder / "logs"
        self.nginx_prefix = folder / "nginx"
        self.prometheus_dir = folder / "prometheus"
        self._children: dict[str, Child] = {}
        self._restart_at: dict[str, float] = {}
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._nginx_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._write_configs()

    # ----- what Quarterdeck is told --------------------------------------------------------

    @property
    def prometheus_url(self) -> str:
        """Return Prometheus's base URL."""
        return f"http://{LOOPBACK}:{self.prometheus_port}"

    @property
    def haproxy_stats_url(self) -> str:
        """Return HAProxy's stats page in CSV."""
        return f"http://{LOOPBACK}:{self.haproxy_ports.stats}/stats;csv"

    @property
    def haproxy_runtime(self) -> str:
        """Return HAProxy's runtime API address, as the config key wants it."""
        return f"tcp://{LOOPBACK}:{self.haproxy_ports.runtime}"

    @property
    def nginx_status_url(self) -> str:
        """Return nginx's stub_status page."""
        return f"http://{LOOPBACK}:{self.nginx_ports.status}/nginx_status"

    @property
    def nginx_upstream_conf(self) -> Path:
        """Return the upstream file nginx includes."""
        return self.nginx_prefix / "conf" / "push-upstreams.conf"

    def nginx_command(self) -> list[str]:
        """Return the nginx command line of this instance (append `-t` or `-s reload`)."""
        conf = self.nginx_prefix / "conf" / "nginx.conf"
        return [
            self.binaries["nginx"],
            "-p",
            str(self.nginx_prefix),
            "-c",
            str(conf),
            "-e",
            "stderr",
        ]

    def gateway_urls(self) -> list[str]:
        """Where users reach the gateway: HAProxy when it runs, else the instances."""
        if "haproxy" in self.binaries:
            return [f"http://{LOOPBACK}:{self.haproxy_ports.gateway}"]
        return [i.url for i in self.instances if i.service == "gateway"]

    def push_urls(self) -> list[str]:
        """Where clients reach push: nginx and/or HAProxy when they run, else the instances."""
        urls = []
        if "nginx" in self.binaries:
            urls.append(f"ws://{LOOPBACK}:{self.nginx_ports.push}/ws")
        if "haproxy" in self.binaries:
            urls.append(f"ws://{LOOPBACK}:{self.haproxy_ports.push}/ws")
        if not urls:
            urls = [f"ws://{i.address}/ws" for i in self.instances if i.service == "push"]
        return urls

    @property
    def redis_url(self) -> str:
        """Return the demo Redis's URL (orders' idempotency keys and the event stream)."""
        return f"redis://{LOOPBACK}:{self.redis_port}/0"

    def quarterdeck_config(self) -> str:
        """The TOML sections that point Quarterdeck at this fleet: its tools, a checkout probe."""
        # A business probe: one checkout through the gateway, as a customer would place it.
        parts = [
            "[[probes]]\n"
            'name = "checkout"\n'
            'service = "gateway"\n'
            f"url = {_toml(self.gateway_urls()[0] + '/api/checkout')}\n"
            "interval_s = 30\n"
            "timeout_ms = 2000\n"
            "expect_status = 200\n"
            "latency_budget_ms = 800\n"
        ]
        if "redis-server" in self.binaries:
            parts.append(f"[redis]\nurl = {_toml(self.redis_url)}\n")
        if "prometheus" in self.binaries:
            parts.append(f"[prometheus]\nurl = {_toml(self.prometheus_url)}\n")
        if "haproxy" in self.binaries:
            parts.append(
                "[[haproxy]]\n"
                'name = "edge"\n'
                f"stats_url = {_toml(self.haproxy_stats_url)}\n"
                f"runtime = {_toml(self.haproxy_runtime)}\n"
            )
        if "nginx" in self.binaries:
            reload = [*self.nginx_command(), "-s", "reload"]
            parts.append(
                "[[nginx]]\n"
                'name = "push-edge"\n'
                f"status_url = {_toml(self.nginx_status_url)}\n"
                f"upstream_conf = {_toml(str(self.nginx_upstream_conf))}\n"
                f"reload = [{', '.join(_toml(word) for word in reload)}]\n"
            )
        return "\n".join(parts)

    def tracing_env(self) -> dict[str, str]:
        """The environment that gives the fleet's exporters the ingest token, when there is one."""
        return tracing_env(self.traces_token) if self.traces_token else {}

    def _tracing_args(self) -> list[str]:
        return ["--traces", self.traces_url] if self.traces_url else []

    # ----- running --------------------------------------------------------------------------

    def start(self) -> DemoFleet:
        """Start every process in a background thread (which also tends and stops them)."""
        self._thread = threading.Thread(target=self._run, name="demo-fleet", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """Wait until every instance and tool answers; return whether they did in time."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Stop everything (traffic, balancers, instances, Prometheus) and wait for it."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def child(self, name: str) -> Child | None:
        """Return the child process named `name` (an instance ID, a tool, or `traffic`)."""
        with self._lock:
            return self._children.get(name)

    def pids(self) -> dict[str, int]:
        """Return the pid of every running child, by name."""
        with self._lock:
            return {name: c.pid for name, c in self._children.items() if c.pid is not None}

    def instance(self, instance_id: str) -> PlannedInstance:
        """Return the planned instance with that ID."""
        return next(i for i in self.instances if i.instance_id == instance_id)

    def fault(self, instance_id: str, *modes: str) -> None:
        """Put an instance in fault (see faults.py for the modes)."""
        self.instance(instance_id)
        write_fault(self.faults_dir, instance_id, *(modes or ("unhealthy",)))

    def heal(self, instance_id: str) -> None:
        """End an instance's fault."""
        clear_fault(self.faults_dir, instance_id)

    def set_nginx_down(self, instance_id: str, down: bool) -> bool:
        """Mark a push server `down` in nginx's upstream file (or not), test and reload nginx.

        Returns whether the file changed (see nginx_drain.mark_down).
        """
        address = self.instance(instance_id).address
        if "nginx" not in self.binaries:
            return False
        master = self.child("nginx")
        with self._nginx_lock:
            return mark_down(
                self.nginx_upstream_conf,
                self.nginx_command(),
                master.pid if master else None,
                address,
                down,
            )

    def crash(self, instance_id: str) -> None:
        """Kill an instance outright (SIGKILL: no deregistration); it restarts after a while."""
        child = self.child(instance_id)
        if child is not None:
            child.signal(signal.SIGKILL)

    def redeploy(self, instance_id: str, version: str) -> None:
        """Roll an instance to another version: stopped (it deregisters), started again at once.

        The new process registers with the new version in its Meta, as a deploy tool's would.
        """
        with self._lock:
            self.instances = [
                dataclasses.replace(i, version=version) if i.instance_id == instance_id else i
                for i in self.instances
            ]
            # Due now: the fleet thread starts it again as soon as it has exited.
            self._restart_at[instance_id] = 0.0
            child = self._children.get(instance_id)
        if child is not None:
            child.signal(signal.SIGTERM)

    # ----- inside the fleet thread ----------------------------------------------------------

    def _write_configs(self) -> None:
        for directory in (self.faults_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if "haproxy" in self.binaries:
            (self.folder / "haproxy.cfg").write_text(
                haproxy_config(self.haproxy_ports, self.instances), encoding="utf-8"
            )
        if "nginx" in self.binaries:
            for directory in ("conf", "logs", "temp"):
                (self.nginx_prefix / directory).mkdir(parents=True, exist_ok=True)
            self.nginx_upstream_conf.write_text(nginx_upstreams(self.instances), encoding="utf-8")
            (self.nginx_prefix / "conf" / "nginx.conf").write_text(
                nginx_config(
                    self.nginx_prefix,
                    self.nginx_ports,
                    self.nginx_upstream_conf,
                    nginx_worker_user(),
                ),
                encoding="utf-8",
            )
        if "prometheus" in self.binaries:
            self.prometheus_dir.mkdir(parents=True, exist_ok=True)
            targets = self.prometheus_dir / "targets.json"
            rules = self.prometheus_dir / "rules.yml"
            targets.write_text(prometheus_targets(self.instances), encoding="utf-8")
            rules.write_text(prometheus_rules(), encoding="utf-8")
            (self.prometheus_dir / "prometheus.yml").write_text(
                prometheus_config(targets, rules, self.scrape_interval), encoding="utf-8"
            )

    def _via_args(self, instance: PlannedInstance) -> list[str]:
        """Gateways reach orders through HAProxy when it runs: weights there steer them."""
        if instance.service != "gateway" or "haproxy" not in self.binaries:
            return []
        return ["--via", f"orders={LOOPBACK}:{self.haproxy_ports.orders}"]

    def _instance_child(self, instance: PlannedInstance) -> Child:
        argv = python_argv(
            "demo.fleet.instance",
            instance.service,
            instance.number,
            "--port",
            instance.port,
            "--version",
            instance.version,
            "--consul",
            self.consul_url,
            "--faults",
            self.faults_dir,
            "--check-interval",
            self.check_interval,
            *(["--canary"] if instance.canary else []),
            *self._via_args(instance),
            *self._tracing_args(),
            *(["--redis", self.redis_url] if "redis-server" in self.binaries else []),
        )
        return Child(
            instance.instance_id,
            argv,
            self._log(instance.instance_id),
            self.folder,
            self.tracing_env(),
        )

    def _tool_children(self) -> list[Child]:
        children = []
        if "haproxy" in self.binaries:
            argv = [self.binaries["haproxy"], "-f", self.folder / "haproxy.cfg", "-db"]
            children.append(Child("haproxy", argv, self._log("haproxy"), self.folder))
        if "nginx" in self.binaries:
            children.append(Child("nginx", self.nginx_command(), self._log("nginx"), self.folder))
        if "prometheus" in self.binaries:
            argv = [
                self.binaries["prometheus"],
                f"--config.file={self.prometheus_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.prometheus_dir / 'data'}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address={LOOPBACK}:{self.prometheus_port}",
            ]
            children.append(Child("prometheus", argv, self._log("prometheus"), self.prometheus_dir))
        if "redis-server" in self.binaries:
            self.redis_dir.mkdir(parents=True, exist_ok=True)
            argv = [self.binaries["redis-server"], "--port", self.redis_port, "--bind", LOOPBACK]
            argv += ["--save", "", "--appendonly", "no", "--dir", self.redis_dir]
            children.append(Child("redis-server", argv, self._log("redis-server"), self.redis_dir))
        return children

    def _traffic_child(self) -> Child:
        argv = python_argv(
            "demo.fleet.traffic",
            *[word for url in self.gateway_urls() for word in ("--http", url)],
            *[word for url in self.push_urls() for word in ("--ws", url)],
            "--rps",
            self.rps,
            "--clients",
            self.clients,
            "--mean-session-s",
            self.mean_session_s,
            *self._tracing_args(),
            *[word for url in self.orders_urls() for word in ("--orders", url)],
        )
        return Child("traffic", argv, self._log("traffic"), self.folder, self.tracing_env())

    def orders_urls(self) -> list[str]:
        """Where the keyed order clients go: the orders instances, when Redis runs."""
        if "redis-server" not in self.binaries:
            return []
        return [i.url for i in self.instances if i.service == "orders"]

    def _log(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _run(self) -> None:
        # Every child is started from this thread and it lives until they are stopped:
        # PR_SET_PDEATHSIG fires when the thread that forked a child ends.
        try:
            self._start_all()
            while not self._stopping.wait(TEND_INTERVAL_S):
                self._tend()
        except Exception:
            log.exception("the demo fleet failed")
        finally:
            self._stop_all()

    def _spawn(self, child: Child) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._children[child.name] = child.start()

    def _start_all(self) -> None:
        for instance in self.instances:
            self._spawn(self._instance_child(instance))
        for child in self._tool_children():
            self._spawn(child)
        if not self._wait_answering(READY_TIMEOUT_S):
            return
        if self.clients or self.rps:
            self._spawn(self._traffic_child())
        self._ready.set()
        log.info("demo fleet up: %d instances, %s", len(self.instances), ", ".join(self.binaries))

    def _readiness_urls(self) -> list[str]:
        urls = [f"{i.url}/health" for i in self.instances]
        if "haproxy" in self.binaries:
            urls.append(self.haproxy_stats_url)
        if "nginx" in self.binaries:
            urls.append(self.nginx_status_url)
        if "prometheus" in self.binaries:
            urls.append(f"{self.prometheus_url}/-/ready")
        return urls

    def _wait_answering(self, timeout: float) -> bool:
        waiting = self._readiness_urls()
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = [url for url in waiting if not answers(url)]
            if not waiting:
                return True
            if time.monotonic() > deadline:
                log.error("demo fleet: no answer in time from %s", ", ".join(waiting))
                return False
            if self._stopping.wait(0.2):
                return False
        return True

    def _tend(self) -> None:
        now = time.monotonic()
        with self._lock:
            children = list(self._children.values())
        instance_ids = {i.instance_id for i in self.instances}
        for child in children:
            if child.running:
                continue
            if child.name not in instance_ids:
                if child.name not in self._restart_at:
                    self._restart_at[child.name] = float("inf")  # tools are not restarted
                    log.error(
                        "demo fleet: %s exited with %s\n%s",
                        child.name,
                        child.returncode,
                        child.log_tail(),
                    )
                continue
            due = self._restart_at.get(child.name)
            if due is None:
                self._restart_at[child.name] = now + self.restart_after_s
                log.warning(
                    "demo fleet: %s exited with %s; restarting it in %.0f s",
                    child.name,
                    child.returncode,
                    self.restart_after_s,
                )
            elif now >= due:
                del self._restart_at[child.name]
                self._spawn(self._instance_child(self.instance(child.name)))

    def _stop_all(self) -> None:
        with self._lock:
            children = dict(self._children)
        # Users first, then the balancers in front, then the instances (which deregister from
        # Consul on SIGTERM), then Prometheus.
        order = [["traffic"], ["haproxy", "nginx"], [i.instance_id for i in self.instances]]
        order.append(["prometheus", "redis-server"])
        for names in order:
            stop_all([children[n] for n in names if n in children])


def tracing_env(token: str) -> dict[str, str]:
    """The environment that makes an OpenTelemetry exporter send `Authorization: Bearer <token>`."""
    # OpenTelemetry SDK: OTEL_EXPORTER_OTLP_TRACES_HEADERS is key=value pairs, URL-encoded.
    bearer = quote(f"Bearer {token}", safe="")
    return {"OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"Authorization={bearer}"}


def _toml(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(value)
