"""An action whose process died mid-run is marked interrupted, says what is known, and undoes.

The process is real: `quarterdeck action drain --wait` in a child process, killed with
SIGKILL while it waits for a connection to close.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from app.store.audit import list_entries
from tests.actions.pages import Pages
from tests.fixtures.processes import wait_for
from tests.fixtures.websocket import open_websockets


def cli_config(push_fleet, tmp_path) -> str:
    haproxy = push_fleet.qd.config.haproxy[0]
    path = tmp_path / "quarterdeck.toml"
    path.write_text(
        f"[store]\nurl = {json.dumps(push_fleet.qd.config.store.url)}\n"
        f'[[haproxy]]\nname = "edge"\nstats_url = "{haproxy.stats_url}"\n'
        f'runtime = "{haproxy.runtime}"\n'
    )
    return str(path)


def test_a_drain_killed_while_waiting_is_interrupted_and_its_done_part_can_be_undone(
    push_fleet, tmp_path
):
    qd = push_fleet.qd
    pages = Pages(push_fleet)
    argv = [
        sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())",
        "--config", cli_config(push_fleet, tmp_path), "action", "drain", "push/s1",
        "--yes", "--force", "--wait", "--wait-timeout", "120", "--reason", "die mid-way",
    ]  # fmt: skip
    with open_websockets(push_fleet.haproxy.frontend_ws_url, 2):
        wait_for(lambda: push_fleet.scur("s1") == 1, "a connection on s1")
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env={**os.environ, "USER": "cli-operator"})  # fmt: skip

        def waiting() -> bool:
            with qd.store.session() as db:
                rows, _ = list_entries(db)
            # A few polls in, so the CLI (which looks once a second) has printed one.
            return bool(rows) and any(
                len(s["progress"]["samples"]) >= 3 for s in rows[0].steps if s.get("progress")
            )

        try:
            wait_for(waiting, "the CLI's drain waiting for the connection", timeout=30)
        finally:
            child.send_signal(signal.SIGKILL)
            out, err = child.communicate(timeout=10)
    assert "waiting: 1 connection" in out.decode(), (out, err)

    page = pages.get("/actions", "viewer").get_data(as_text=True)

    assert 'data-status="interrupted"' in page
    assert "Interrupted: the process running it stopped mid-action." in page
    entry = pages.get("/api/v1/audit", "viewer").get_json()["entries"][0]
    assert entry["status"] == "interrupted" and entry["finished_at"]
    haproxy_step, wait_step = entry["steps"]
    assert haproxy_step["changed"] is True and haproxy_step["ok"] is True
    assert "holds this change" in haproxy_step["detail"]
    assert wait_step["ok"] is None and "did not finish" in wait_step["detail"]
    assert entry["undo_url"]
    token = pages.confirm_form("action=drain&service=push&instance=s1&force=1")["csrf_token"]
    undone = pages.post(f"/actions/{entry['id']}/undo", {"csrf_token": token})
    assert undone.status_code == 303, undone.get_data(as_text=True)
    assert pages.wait_finished(undone.headers["Location"].rsplit("/", 1)[1])["status"] == "done"
    assert push_fleet.haproxy.send_runtime("show stat").count(",UP,") >= 2
