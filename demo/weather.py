"""Incidents for the demo, made for real on the fleet's processes, then healed.

Every little while one instance is hurt: its /health starts answering 503 (its Consul check,
HAProxy's check and the balancers all see it), it answers half its requests with 503 while its
checks pass (Prometheus sees the error ratio), it slows down, it is killed outright (connection
refused; the fleet restarts it a little later), push drops all its WebSocket connections, a push
server is marked `down` in nginx's upstream file (a drain: Consul still says passing), or it
gets a maintenance window in Consul. A minute or two later it heals.

The first incidents are always the two that traces explain best: inventory turns sometimes
slow (a quarter of its requests take 800 ms more, so checkouts wait on it), then payments fails
half of its charges (the error climbs through orders and the gateway, span by span).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Collection, Sequence

from demo.consul import ConsulDouble
from demo.fleet.supervisor import DemoFleet
from demo.fleet.topology import SERVICES, PlannedInstance

log = logging.getLogger(__name__)

INCIDENTS = (
    "unhealthy",
    "errors",
    "slow",
    "spikes",
    "crash",
    "drop",
    "maintenance",
    "nginx-down",
)
FAULT_FILE_INCIDENTS = {"unhealthy", "errors", "slow", "spikes", "drop"}
# What strikes first, in order (each only when its kind is among the incidents asked for).
OPENING = (("inventory-1", "spikes"), ("payments-1", "errors"))


class DemoWeather:
    """Every little while, break one instance for a minute or two, then heal it."""

    def __init__(
        self,
        fleet: DemoFleet,
        double: ConsulDouble,
        seed: int | None = None,
        pace_s: float = 25.0,
        incidents: Sequence[str] = INCIDENTS,
        opening: bool = True,
        spare: Collection[str] = (),
    ) -> None:
        unknown = [kind for kind in incidents if kind not in INCIDENTS]
        if unknown:
            raise ValueError(f"unknown incident {unknown[0]!r}; known: {', '.join(INCIDENTS)}")
        self.fleet = fleet
        self.double = double
        self.random = random.Random(seed)
        self.pace_s = pace_s
        self.incidents = tuple(incidents)
        self.history: list[tuple[str, str]] = []  # (instance id, incident), oldest first
        self._broken: dict[str, tuple[str, int]] = {}
        self._opening = [(i, kind) for i, kind in OPENING if kind in self.incidents and opening]
        # Instances left alone (a live collection: the demo's night holds some for a while).
        self.spare = spare
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-weather", daemon=True)

    def start(self) -> DemoWeather:
        """Start changing the fleet in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, and heal what is still broken (a killed instance comes back by itself)."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=5)
        for instance_id, (kind, _) in list(self._broken.items()):
            self._heal(instance_id, kind)
        self._broken.clear()

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(self.pace_s * self.random.uniform(0.6, 1.4)):
            tick += 1
            for instance_id, (kind, until) in list(self._broken.items()):
                if until <= tick:
                    self._heal(instance_id, kind)
                    del self._broken[instance_id]
            picked = self._next_incident()
            if picked is None:
                continue
            victim, kind = picked
            try:
                self._break(victim, kind)
            except (KeyError, ValueError, OSError, RuntimeError) as error:  # e.g. not registered
                log.info("demo weather: could not %s %s: %s", kind, victim.instance_id, error)
                continue
            self._broken[victim.instance_id] = (kind, tick + self.random.randint(2, 5))
            self.history.append((victim.instance_id, kind))

    def _next_incident(self) -> tuple[PlannedInstance, str] | None:
        if self._opening:
            instance_id, kind = self._opening.pop(0)
            return self.fleet.instance(instance_id), kind
        candidates = [
            i
            for i in self.fleet.instances
            if i.instance_id not in self._broken and i.instance_id not in self.spare
        ]
        if not candidates:
            return None
        victim = self.random.choice(candidates)
        kinds = [k for k in self.incidents if _applies(k, victim, self.fleet)]
        if not kinds:
            return None
        return victim, self.random.choice(kinds)

    def _break(self, victim: PlannedInstance, kind: str) -> None:
        if kind in FAULT_FILE_INCIDENTS:
            self.fleet.fault(victim.instance_id, kind)
        elif kind == "crash":
            self.fleet.crash(victim.instance_id)
        elif kind == "nginx-down":
            self.fleet.set_nginx_down(victim.instance_id, True)
        elif kind == "maintenance":
            self.double.enable_service_maintenance(
                victim.instance_id, reason=f"demo: rolling restart of {victim.service}"
            )

    def _heal(self, instance_id: str, kind: str) -> None:
        if kind in FAULT_FILE_INCIDENTS:
            self.fleet.heal(instance_id)
        elif kind == "nginx-down":
            try:
                self.fleet.set_nginx_down(instance_id, False)
            except (OSError, RuntimeError) as error:
                log.info("demo weather: could not undo nginx down of %s: %s", instance_id, error)
        elif kind == "maintenance":
            try:
                self.double.disable_service_maintenance(instance_id)
            except (KeyError, ValueError) as error:
                log.info("demo weather: could not end maintenance of %s: %s", instance_id, error)


def _applies(kind: str, instance: PlannedInstance, fleet: DemoFleet) -> bool:
    if kind == "drop":
        return instance.service == "push"
    if kind == "nginx-down":
        # Only a server that takes traffic (not the backup) is worth draining.
        last = SERVICES["push"].instances  # configs.nginx_upstreams makes the last one a backup
        return instance.service == "push" and "nginx" in fleet.binaries and instance.number < last
    if kind in ("errors", "slow", "spikes"):
        return instance.service != "push"
    return True
