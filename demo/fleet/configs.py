"""The generated configuration of the demo's HAProxy, nginx and Prometheus, and their targets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from demo.fleet.topology import LOOPBACK, PlannedInstance

PUSH_UPSTREAM = "push"
FLEET_JOB = "fleet"


@dataclass(frozen=True)
class HAProxyPorts:
    """Where the demo's HAProxy listens."""

    gateway: int
    push: int
    stats: int
    runtime: int
    # Gateways call orders through this frontend, so canary weights move real requests.
    orders: int = 0


@dataclass(frozen=True)
class NginxPorts:
    """Where the demo's nginx listens: push traffic, and stub_status on its own port."""

    push: int
    status: int


def haproxy_config(ports: HAProxyPorts, instances: Sequence[PlannedInstance]) -> str:
    """HAProxy in front of gateway, push and orders; stats page (`;csv`) and runtime API on TCP."""
    gateway = [i for i in instances if i.service == "gateway"]
    push = [i for i in instances if i.service == "push"]
    orders = [i for i in instances if i.service == "orders"]

    def servers(members: Sequence[PlannedInstance]) -> str:
        # Server names are the Consul service IDs, so Quarterdeck matches them by name as well.
        return "".join(f"    server {i.instance_id} {i.address} check\n" for i in members)

    orders_proxy = (
        "frontend orders-in\n"
        f"    bind {LOOPBACK}:{ports.orders}\n"
        "    default_backend orders\n"
        "\n"
        "backend orders\n"
        "    balance roundrobin\n"
        f"{servers(orders)}"
        "\n"
        if ports.orders and orders
        else ""
    )

    return (
        "# Written by `quarterdeck demo`: HAProxy in front of the demo fleet.\n"
        "global\n"
        "    nbthread 1\n"
        f"    stats socket ipv4@{LOOPBACK}:{ports.runtime} level admin\n"
        "\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 2s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "    # HAProxy: an upgraded (WebSocket) connection uses `timeout tunnel`.\n"
        "    timeout tunnel 1h\n"
        "    option httpchk GET /health\n"
        "    default-server inter 2s fall 2 rise 2\n"
        "\n"
        "frontend gateway-in\n"
        f"    bind {LOOPBACK}:{ports.gateway}\n"
        "    default_backend gateway\n"
        "\n"
        "frontend push-in\n"
        f"    bind {LOOPBACK}:{ports.push}\n"
        "    default_backend push\n"
        "\n"
        "backend gateway\n"
        "    balance roundrobin\n"
        f"{servers(gateway)}"
        "\n"
        "backend push\n"
        "    balance leastconn\n"
        f"{servers(push)}"
        "\n"
        f"{orders_proxy}"
        "listen stats\n"
        f"    bind {LOOPBACK}:{ports.stats}\n"
        "    stats enable\n"
        "    stats uri /stats\n"
    )


def nginx_upstreams(instances: Sequence[PlannedInstance]) -> str:
    """The `upstream push` block, in its own file: what Quarterdeck reads (and edits to drain)."""
    push = [i for i in instances if i.service == "push"]
    lines = []
    for position, instance in enumerate(push):
        if position == len(push) - 1 and len(push) > 2:
            # The last one takes traffic only when the others are unavailable.
            params = "backup max_fails=2 fail_timeout=10s"
        elif position == 0:
            params = f"weight={len(push)} max_fails=2 fail_timeout=10s max_conns=1000"
        else:
            params = "weight=1 max_fails=2 fail_timeout=10s"
        lines.append(f"    server {instance.address} {params};\n")
    return (
        "# Written by `quarterdeck demo`: the push upstream, included by nginx.conf.\n"
        f"upstream {PUSH_UPSTREAM} {{\n{''.join(lines)}}}\n"
    )


def nginx_config(
    prefix: Path, ports: NginxPorts, upstream_conf: Path, worker_user: str | None
) -> str:
    """nginx (own prefix, pid and logs) proxying WebSockets to push, stub_status on its own port."""
    user_line = f"user {worker_user};\n" if worker_user else ""
    return (
        "# Written by `quarterdeck demo`: nginx in front of push (WebSocket).\n"
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"
        "worker_rlimit_nofile 4096;\n"
        f"{user_line}"
        f"pid {prefix}/logs/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log warn;\n"
        "\n"
        "events {\n"
        "    worker_connections 2048;\n"
        "}\n"
        "\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {prefix}/temp/client_body;\n"
        f"    proxy_temp_path {prefix}/temp/proxy;\n"
        f"    fastcgi_temp_path {prefix}/temp/fastcgi;\n"
        f"    uwsgi_temp_path {prefix}/temp/uwsgi;\n"
        f"    scgi_temp_path {prefix}/temp/scgi;\n"
        "    # Nothing is buffered to disk, so workers never need the (private) demo folder.\n"
        "    client_max_body_size 64k;\n"
        "    client_body_buffer_size 64k;\n"
        "    proxy_buffering off;\n"
        "    proxy_max_temp_file_size 0;\n"
        "\n"
        "    map $http_upgrade $connection_upgrade {\n"
        "        default upgrade;\n"
        "        '' close;\n"
        "    }\n"
        "\n"
        f"    include {upstream_conf};\n"
        "\n"
        "    server {\n"
        f"        listen {LOOPBACK}:{ports.push};\n"
        "        location / {\n"
        f"            proxy_pass http://{PUSH_UPSTREAM};\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Upgrade $http_upgrade;\n"
        "            proxy_set_header Connection $connection_upgrade;\n"
        "            proxy_set_header Host $host;\n"
        "            # nginx closes an idle proxied connection after proxy_read_timeout.\n"
        "            proxy_read_timeout 1h;\n"
        "            proxy_send_timeout 1h;\n"
        "            proxy_next_upstream error timeout http_502 http_503;\n"
        "        }\n"
        "    }\n"
        "\n"
        "    server {\n"
        f"        listen {LOOPBACK}:{ports.status};\n"
        "        location = /nginx_status {\n"
        "            stub_status;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


def prometheus_config(targets_file: Path, rules_file: Path, interval: str) -> str:
    """Prometheus scraping every instance (file_sd) and evaluating the fleet's alert rules."""
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": FLEET_JOB,
                # The series carry their own `service` and `instance`, equal to the target's.
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }
    # JSON is valid YAML, so no YAML library is needed.
    return json.dumps(config, indent=2) + "\n"


def prometheus_targets(instances: Sequence[PlannedInstance]) -> str:
    """The file_sd target list: one target per instance, labelled with service and instance."""
    groups = [
        {"targets": [i.address], "labels": {"service": i.service, "instance": i.instance_id}}
        for i in instances
    ]
    return json.dumps(groups, indent=2) + "\n"


ERROR_RATIO = (
    f'sum by (service) (rate(http_server_request_duration_seconds_count{{job="{FLEET_JOB}",'
    'http_response_status_code=~"5.."}[1m]))'
    " / sum by (service) (rate(http_server_request_duration_seconds_count"
    f'{{job="{FLEET_JOB}"}}[1m]))'
)


def prometheus_rules() -> str:
    """Two real alerts: an instance that does not answer its scrape; a high 5xx ratio."""
    rules = {
        "groups": [
            {
                "name": "demo-fleet",
                "rules": [
                    {
                        "alert": "InstanceDown",
                        "expr": f'up{{job="{FLEET_JOB}"}} == 0',
                        "for": "15s",
                        "labels": {"severity": "critical"},
                        "annotations": {
                            "summary": "{{ $labels.instance }} of {{ $labels.service }} "
                            "does not answer its scrape"
                        },
                    },
                    {
                        "alert": "HighErrorRatio",
                        "expr": f"({ERROR_RATIO}) > 0.05",
                        "for": "30s",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "{{ $labels.service }} answers "
                            "{{ $value | humanizePercentage }} of its requests with a 5xx"
                        },
                    },
                ],
            }
        ]
    }
    return json.dumps(rules, indent=2) + "\n"
