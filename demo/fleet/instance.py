"""Run one instance of the demo fleet: `python -m demo.fleet.instance SERVICE NUMBER ...`.

It serves on its port, registers itself in Consul (with an HTTP check on its /health) once it
listens, and deregisters when it is stopped (SIGTERM or SIGINT).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

import prometheus_client

from demo.fleet.agent import ConsulAgent, Upstreams
from demo.fleet.faults import FaultSwitch
from demo.fleet.metrics import InstanceMetrics
from demo.fleet.topology import LOOPBACK, SERVICES
from demo.fleet.tracing import FleetTracing
from fleet.degrade import DegradeSwitch

log = logging.getLogger("demo.fleet.instance")
REGISTER_RETRY_S = 0.5


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="demo.fleet.instance")
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("number", type=int)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--canary", action="store_true")
    parser.add_argument("--consul", required=True, help="the Consul agent's URL")
    parser.add_argument("--faults", type=Path, required=True, help="the fault switch folder")
    parser.add_argument("--check-interval", default="5s")
    parser.add_argument(
        "--traces", help="the OTLP/HTTP traces endpoint (…/v1/traces); no traces without it"
    )
    parser.add_argument("--redis", help="Redis URL for idempotency keys (orders uses it)")
    parser.add_argument(
        "--via",
        action="append",
        default=[],
        metavar="SERVICE=HOST:PORT",
        help="call SERVICE through this balancer instead of picking an instance from Consul",
    )
    parser.add_argument("--idem-stream", default="quarterdeck:idem:events")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve one instance until SIGTERM/SIGINT."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # Only the series Prometheus needs: no `_created` twin of every histogram.
    prometheus_client.disable_created_metrics()
    service = SERVICES[args.service]
    instance_id = f"{service.name}-{args.number}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent = ConsulAgent(args.consul)
    faults = FaultSwitch(args.faults / instance_id)
    metrics = InstanceMetrics(service.name, instance_id)
    tracing = FleetTracing(service.name, instance_id, args.version, args.traces)
    ready = threading.Event()
    serving = threading.Thread(
        target=_serve,
        args=(service, instance_id, args, agent, faults, metrics, tracing, stop, ready),
    )
    serving.start()
    registered = False
    try:
        if ready.wait(30):
            registered = _register(agent, service, instance_id, args, stop, faults)
        while not stop.wait(1.0):
            if not serving.is_alive():
                log.error("%s stopped serving", instance_id)
                return 1
    finally:
        stop.set()
        if registered:
            try:
                agent.deregister(instance_id)
            except OSError as error:
                log.warning("could not deregister %s: %s", instance_id, error)
        serving.join(timeout=10)
        tracing.stop()
    log.info("%s stopped", instance_id)
    return 0


def _via(pairs: list[str]) -> dict[str, tuple[str, int]]:
    """Parse `--via SERVICE=HOST:PORT` options."""
    found = {}
    for pair in pairs:
        name, _, address = pair.partition("=")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


def _serve(service, instance_id, args, agent, faults, metrics, tracing, stop, ready) -> None:
    if service.websocket:
        from demo.fleet.push import PushInstance, serve_push

        push = PushInstance(instance_id, args.version, faults, metrics, tracing)
        serve_push(args.port, push, stop, ready)
        return
    from demo.fleet.http_service import InstanceHTTPServer, ServiceInstance

    upstreams = Upstreams(agent, service.upstreams, via=_via(args.via))
    # The service's degrade switch in Consul KV, watched the way a real service would.
    degrade = DegradeSwitch(args.consul, service.name)
    order_keys = None
    if args.redis and service.name == "orders":
        from demo.fleet.orders_keys import OrderKeys

        order_keys = OrderKeys(args.redis, instance_id, args.idem_stream)
    instance = ServiceInstance(
        service,
        instance_id,
        args.version,
        upstreams,
        faults,
        metrics,
        tracing,
        degrade=degrade,
        order_keys=order_keys,
    )
    server = InstanceHTTPServer(args.port, instance)
    ready.set()
    thread = threading.Thread(target=server.serve_forever, args=(0.5,), daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()
    degrade.stop()


def _register(
    agent: ConsulAgent, service, instance_id: str, args, stop: threading.Event, faults: FaultSwitch
) -> bool:
    while not stop.is_set():
        try:
            agent.register(
                service,
                instance_id,
                args.port,
                args.version,
                args.canary,
                args.check_interval,
                healthy=not faults.has("unhealthy"),
            )
        except OSError as error:
            log.info("registering %s at %s:%s: %s", instance_id, LOOPBACK, args.port, error)
            stop.wait(REGISTER_RETRY_S)
            continue
        log.info("%s registered at %s:%s", instance_id, LOOPBACK, args.port)
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
