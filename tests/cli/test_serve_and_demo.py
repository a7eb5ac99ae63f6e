"""`quarterdeck serve` and `quarterdeck demo` start real servers that answer and collect."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from http.cookiejar import CookieJar

import pytest

from demo.fleet.tools import find_tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, headers: dict | None = None, opener=None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
        exc.close()
        return exc.code, body


def wait_until(condition, timeout: float = 60.0):  # a deadline for a busy machine
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARTERDECK_", "CONSUL_"))}
    env["QUARTERDECK_SECRET_KEY"] = "serve-test-key"
    return env


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def test_serve_migrates_an_empty_store_collects_and_answers(tmp_path, clean_env):
    port = free_port()
    config = tmp_path / "quarterdeck.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "q.db"}"\n'
        f'[server]\nbind = "127.0.0.1:{port}"\ncookie_secure = false\n'
        "[collect]\ninterval_s = 1\n"
        '[[static_services]]\nname = "orders"\ninstances = ["10.0.0.5:8000"]\n'
    )
    clean_env["QUARTERDECK_CONFIG"] = str(config)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=tmp_path,
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(f"{base}/readyz")[0] == 200)
        created = subprocess.run(
            [sys.executable, "-m", "app.cli", "token", "create", "probe", "--role", "viewer"],
            cwd=tmp_path,
            env=clean_env,
            capture_output=True,
            text=True,
            check=True,
        )
        auth = {"Authorization": f"Bearer {created.stdout.strip()}"}

        def static_ok():
            status, body = get(f"{base}/api/v1/sources", auth)
            sources = {s["name"]: s for s in json.loads(body)["sources"]} if status == 200 else {}
            return sources.get("static", {}).get("status") == "ok"

        wait_until(static_ok)
        status, body = get(f"{base}/api/v1/services", auth)
        assert status == 200 and [s["name"] for s in json.loads(body)["services"]] == ["orders"]
        assert get(f"{base}/services")[0] == 200  # redirected to the sign-in page, which answers
        assert "quarterdeck_collector_runs_total" in get(f"{base}/metrics")[1]
    finally:
        stop(process)
    assert process.returncode in (0, -signal.SIGINT)


def test_demo_prints_a_one_time_password_that_signs_in_to_a_filled_dashboard(tmp_path, clean_env):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--bind", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        password = None
        deadline = time.monotonic() + 90  # the fleet, its tools and the store start first
        while password is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            match = re.search(r"one-time password: (\S+)", line)
            password = match.group(1) if match else None
        assert password, "the demo printed no password"
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(f"{base}/healthz")[0] == 200)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        form = get(f"{base}/login", opener=opener)[1]
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode(
            {"username": "admin", "password": password, "csrf_token": token}
        ).encode()
        with opener.open(urllib.request.Request(f"{base}/login", data=data), timeout=5) as r:
            assert r.status == 200 and "Overview" in r.read().decode()

        def services_page():
            body = get(f"{base}/services", opener=opener)[1]
            return "orders" in body and "legacy-billing" in body and body

        page = wait_until(services_page)
        assert "simulated" in page  # the demo says its Consul is not real
        # The demo's own HAProxy, nginx and Prometheus are sources too, where installed; each
        # is "ok" once its collector has read it ("disabled" in a build without that collector).
        tools = {"haproxy": "edge", "nginx": "push-edge", "prometheus": "prometheus",
                 "redis-server": "redis"}  # fmt: skip
        expected = {"consul", "static", *(tools[t] for t in tools if find_tool(t))}

        def sources_ok():
            body = get(f"{base}/api/v1/sources", opener=opener)[1]
            found = {s["name"]: s["status"] for s in json.loads(body)["sources"]}
            fine = found.keys() == expected and found["consul"] == found["static"] == "ok"
            return fine and all(v in ("ok", "disabled") for v in found.values()) and found

        wait_until(sources_ok)
    finally:
        stop(process)
