"""`quarterdeck demo`: the real dashboard on a fresh SQLite store with a simulated fleet."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import tempfile
from pathlib import Path

from app.config import (
    Config,
    ConsulConfig,
    ServerConfig,
    StaticServiceConfig,
    StoreConfig,
)

log = logging.getLogger(__name__)

DEMO_ADMIN = "admin"
BANNER = (
    "Demo: the Consul agent here is simulated (an in-process double of its HTTP API, with "
    "made-up incidents every half minute or so) and the store is a throw-away SQLite file. "
    "Against a real fleet only the config changes."
)


def demo_config(workdir: Path, bind: str, consul_url: str | None) -> Config:
    """Return the configuration the demo runs with."""
    return Config(
        store=StoreConfig(url=f"sqlite:///{workdir / 'quarterdeck-demo.db'}"),
        # The demo serves plain HTTP on loopback, where a Secure cookie would not be sent back.
        server=dataclasses.replace(ServerConfig(), bind=bind, cookie_secure=False),
        consul=ConsulConfig(url=consul_url, token_env="QUARTERDECK_DEMO_CONSUL_TOKEN")  # noqa: S106
        if consul_url
        else None,
        static_services=(
            StaticServiceConfig(
                name="legacy-billing",
                instances=("127.0.0.1:9301", "127.0.0.1:9302"),
                tags=("static", "version=2024.3"),
            ),
        ),
        demo=True,
    )


def run_demo(bind: str) -> int:
    """Start the simulated fleet, create a one-time admin and serve the dashboard."""
    from app.auth.accounts import create_user
    from app.cli import _open
    from app.serving import serve_quarterdeck
    from demo.consul import ConsulDouble
    from demo.fleet_seed import seed_demo_fleet
    from demo.weather import DemoWeather

    # Sign-ins need not outlive the demo: a fresh session key each run, unless one is set.
    os.environ.setdefault("QUARTERDECK_SECRET_KEY", secrets.token_hex(32))
    workdir = Path(tempfile.mkdtemp(prefix="quarterdeck-demo-"))
    consul = ConsulDouble()
    instances = seed_demo_fleet(consul)
    consul.start()
    weather = DemoWeather(consul, instances).start()
    config = demo_config(workdir, bind, consul.url)
    qd = _open(config, migrate=True)
    password = secrets.token_urlsafe(12)
    with qd.store.session(write=True) as db:
        create_user(db, DEMO_ADMIN, "admin", password)
    host, _, port = bind.rpartition(":")
    print(
        "\n"
        f"  Quarterdeck demo: http://{host}:{port}/\n"
        f"  sign in as '{DEMO_ADMIN}' with the one-time password: {password}\n"
        f"  simulated Consul agent at {consul.url}; store in {workdir}\n",
        flush=True,
    )
    try:
        return serve_quarterdeck(qd, banner=BANNER)
    finally:
        weather.stop()
        consul.stop()
