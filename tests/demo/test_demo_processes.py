"""The demo runs its fleet as child processes and leaves none behind when it stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from demo.consul import ConsulDouble
from demo.fleet.supervisor import DemoFleet
from demo.fleet.topology import FLEET, instance_count
from tests.demo.conftest import get_json
from tests.fixtures.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Return the pids of every live process below `pid`."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Tell whether a process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_stopping_the_fleet_leaves_no_process_and_no_registration_behind(tmp_path):
    with ConsulDouble() as double:
        fleet = DemoFleet(tmp_path, double.url, check_interval="1s", clients=10, rps=1)
        fleet.start()
        try:
            assert fleet.wait_ready(90)
            wait_for(lambda: "traffic" in fleet.pids(), "the traffic generator running", 10)
            pids = set(fleet.pids().values())
            for pid in list(pids):
                pids |= descendants(pid)  # nginx workers, among others
            assert len(pids) > instance_count() + 3
            registered = get_json(f"{double.url}/v1/agent/services")
            assert len(registered) == instance_count()
        finally:
            fleet.stop()
        assert [pid for pid in pids if alive(pid)] == []
        # Each instance deregistered itself on its way out.
        assert get_json(f"{double.url}/v1/agent/services") == {}


def test_the_demo_watches_the_real_fleet_and_leaves_nothing_behind_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
    env["PYTHONPATH"] = str(ROOT)
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--bind", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        printed = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("QUARTERDECK_CONFIG=" in p for p in printed):
            printed.append(demo.stdout.readline())
        text = "".join(printed)
        consul_url = re.search(r"simulated Consul agent at (\S+)", text).group(1)
        config_path = Path(re.search(r"QUARTERDECK_CONFIG=(\S+)", text).group(1))
        config = config_path.read_text()
        for section in ("[prometheus]", "[[haproxy]]", "[[nginx]]"):
            assert section in config
        # Every instance of the five services registers itself and passes its real check.

        def registered_and_passing() -> bool:
            checks = get_json(f"{consul_url}/v1/health/state/any")
            passing = {c["ServiceName"] for c in checks if c["Status"] == "passing"}
            count = sum(1 for c in checks if c["ServiceID"] and c["Status"] == "passing")
            return {s.name for s in FLEET} <= passing and count >= instance_count()

        wait_for(registered_and_passing, "the fleet registered and passing", 60)
        # No simulated twin: the five services have only the real instances.
        for service in FLEET:
            entries = get_json(f"{consul_url}/v1/health/service/{service.name}")
            assert len(entries) == service.instances
        below = descendants(demo.pid)
        assert len(below) > instance_count()
    except BaseException:
        demo.kill()
        demo.communicate()
        raise
    demo.send_signal(signal.SIGTERM)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0
    assert f"demo folder removed: {config_path.parent}" in rest
    assert not config_path.parent.exists()
    assert [pid for pid in below if alive(pid)] == []


def test_a_demo_killed_outright_still_takes_its_fleet_with_it(tmp_path):
    with ConsulDouble() as double:
        # The fleet's own thread is the parent the kernel watches (PR_SET_PDEATHSIG): run it
        # in a child process and kill that with SIGKILL, which nothing can catch.
        script = (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from demo.fleet.supervisor import DemoFleet\n"
            "fleet = DemoFleet(Path(sys.argv[1]), sys.argv[2], clients=5, rps=1).start()\n"
            "assert fleet.wait_ready(90)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        owner = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), double.url],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert owner.stdout.readline().strip() == "ready"
            wait_for(lambda: len(descendants(owner.pid)) > instance_count() + 3, "the fleet", 20)
            below = descendants(owner.pid)
        finally:
            owner.kill()
            owner.wait()
            owner.stdout.close()
        wait_for(lambda: not [pid for pid in below if alive(pid)], "every fleet process gone", 30)
