"""The third-party servers the demo runs when installed, finding them, and small probes."""

from __future__ import annotations

import grp
import http.client
import os
import pwd
import shutil
import socket
from dataclasses import dataclass

from demo.fleet.topology import LOOPBACK

TOOLS = ("haproxy", "nginx", "prometheus", "redis-server")
# Debian installs haproxy and nginx in /usr/sbin, which is not on a normal user's PATH.
EXTRA_BIN_DIRS = ("/usr/sbin", "/sbin")


@dataclass(frozen=True)
class ToolSpec:
    """A third-party server the demo can run, and how to get it."""

    name: str
    package: str
    gives: str


TOOL_SPECS = {
    "haproxy": ToolSpec("haproxy", "haproxy", "HAProxy in front of gateway and push"),
    "nginx": ToolSpec("nginx", "nginx-light", "nginx in front of push (WebSocket)"),
    "prometheus": ToolSpec("prometheus", "prometheus", "Prometheus scraping the fleet"),
    "redis-server": ToolSpec(
        "redis-server", "redis-server", "Redis for the orders' idempotency keys"
    ),
}


def find_tool(name: str) -> str | None:
    """Return the path of an installed binary (PATH, then /usr/sbin and /sbin), or None."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *EXTRA_BIN_DIRS])
    return shutil.which(name, path=search)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports the kernel just handed out as free."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def answers(url: str, expect: int = 200) -> bool:
    host_port = url.split("://", 1)[1].split("/", 1)
    host, _, port = host_port[0].rpartition(":")
    path = "/" + (host_port[1] if len(host_port) > 1 else "")
    connection = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == expect
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def nginx_worker_user() -> str | None:
    """nginx workers run as nobody when we are root (nginx ignores `user` otherwise)."""
    if os.geteuid() != 0:
        return None
    account = pwd.getpwnam("nobody")
    return f"{account.pw_name} {grp.getgrgid(account.pw_gid).gr_name}"
