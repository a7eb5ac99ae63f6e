"""The demo's opening night: a scripted run of incidents an on-call engineer meets, then weather.

In its first minutes the demo replays a believable night on the real fleet, one scene after
another, so every page has something true to show within a minute:

  slow dependency   inventory-1 turns sometimes slow (a quarter of its requests 800 ms more)
  failing instance  payments-1 fails its health check and half of its charges
  retry storm       a client that never backs off retries a few orders every second or two
                    with the same keys, now and then with another payload (payload mismatches)
  bad canary        orders-2 is redeployed as a new release candidate that fails half of its
                    requests; the releases key names it active, so the demo's rule proposes to
                    roll it back (an operator approves it on the Overview or the Rules page)

A scene ends by itself after a while (the storm after 20 s, before the canary goes out), except
the bad canary: it stays broken until the release
is rolled back (the releases key no longer names it active), or after `CANARY_GIVE_UP_S`.
Random weather (demo/weather.py) starts once the night has opened.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from demo.consul import ConsulDouble
from demo.fleet.order_clients import ITEMS, post_order
from demo.fleet.supervisor import DemoFleet
from demo.fleet.topology import SERVICES, release_record

log = logging.getLogger(__name__)

SLOW_DEPENDENCY = "inventory-1"
FAILING_INSTANCE = "payments-1"
CANARY_SERVICE = "orders"
CANARY_INSTANCE = "orders-2"
BAD_CANARY_VERSION = "2.5.0-rc.2"
CANARY_GIVE_UP_S = 1800.0
STORM_KEYS = 3
STORM_RETRY_S = 1.5  # a broken client's retry interval: 40 a minute per key, a storm
STORM_MISMATCH_EVERY = 5  # every fifth retry carries another payload under the same key


@dataclass(frozen=True)
class Scene:
    """One incident of the night: when it starts, how long it lasts (None: until healed)."""

    name: str
    at_s: float
    lasts_s: float | None
    says: str


# Offsets for the real demo; tests pass a `pace` below 1 to replay it faster.
SCENES = (
    Scene("slow-dependency", 5, 240, f"{SLOW_DEPENDENCY} is sometimes slow"),
    Scene("failing-instance", 15, 180, f"{FAILING_INSTANCE} fails its checks and its charges"),
    # Over before the canary goes out: a client's bug, not the release's, so the comparison
    # of the two releases does not count it against the new one.
    Scene("retry-storm", 22, 20, "an orders client retries without backing off"),
    # Late enough that the stable release has whole minutes of spans to be compared with (the
    # comparison counts whole minutes only: docs/slo.md, Releases).
    Scene("bad-canary", 160, None, f"{CANARY_INSTANCE} is redeployed as {BAD_CANARY_VERSION}"),
)

SCENE_INSTANCES = {
    "slow-dependency": (SLOW_DEPENDENCY,),
    "failing-instance": (FAILING_INSTANCE,),
    "bad-canary": (CANARY_INSTANCE,),
}


class IncidentNight:
    """Play SCENES on the fleet in the background, then start `then` (the random weather)."""

    def __init__(
        self,
        fleet: DemoFleet,
        double: ConsulDouble,
        pace: float = 1.0,
        then: Callable[[], object] | None = None,
        seed: int | None = None,
    ) -> None:
        self.fleet = fleet
        self.double = double
        self.pace = pace
        self.then = then
        self.random = random.Random(seed)
        self.history: list[tuple[str, str]] = []  # (scene, "start" | "end"), oldest first
        # The instances a scene holds broken now: the weather leaves them alone.
        self.holding: set[str] = set()
        self._stop = threading.Event()
        self._storm_stop = threading.Event()
        self._storm: threading.Thread | None = None
        self._thread = threading.Thread(target=self._run, name="demo-night", daemon=True)

    def start(self) -> IncidentNight:
        """Start the night in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and heal what the night still holds broken."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._end_storm()
        for instance_id in (SLOW_DEPENDENCY, FAILING_INSTANCE, CANARY_INSTANCE):
            self.fleet.heal(instance_id)

    def _run(self) -> None:
        started = time.monotonic()
        pending = sorted(SCENES, key=lambda s: s.at_s)
        ending: dict[str, float] = {}
        weather_started = False
        while not self._stop.wait(min(0.5, max(0.01, self.pace))):
            elapsed = (time.monotonic() - started) / self.pace
            while pending and pending[0].at_s <= elapsed:
                scene = pending.pop(0)
                try:
                    self._begin(scene.name)
                except (KeyError, ValueError, OSError, RuntimeError) as error:
                    log.info("demo night: could not start %s: %s", scene.name, error)
                    continue
                self.history.append((scene.name, "start"))
                log.info("demo night: %s", scene.says)
                lasts = scene.lasts_s if scene.lasts_s is not None else CANARY_GIVE_UP_S
                ending[scene.name] = scene.at_s + lasts
            for name, until in list(ending.items()):
                done = elapsed >= until
                if name == "bad-canary" and not self._canary_active():
                    done = True  # rolled back (or replaced): the broken build takes no traffic
                if done:
                    self._finish(name)
                    del ending[name]
                    self.history.append((name, "end"))
            if not pending and not weather_started and self.then is not None:
                weather_started = True
                self.then()

    def _begin(self, name: str) -> None:
        self.holding.update(SCENE_INSTANCES.get(name, ()))
        if name == "slow-dependency":
            self.fleet.fault(SLOW_DEPENDENCY, "spikes")
        elif name == "failing-instance":
            self.fleet.fault(FAILING_INSTANCE, "unhealthy", "errors")
        elif name == "retry-storm":
            urls = self.fleet.orders_urls()
            if not urls:
                raise RuntimeError("no keyed orders here (Redis is not installed)")
            self._storm_stop.clear()
            self._storm = threading.Thread(
                target=retry_storm,
                args=(urls, self._storm_stop, self.random, self.pace),
                name="demo-storm",
                daemon=True,
            )
            self._storm.start()
        elif name == "bad-canary":
            # The new build is broken: it fails half of its requests once it is up.
            self.fleet.fault(CANARY_INSTANCE, "errors")
            self.fleet.redeploy(CANARY_INSTANCE, BAD_CANARY_VERSION)
            self.double.kv_put(
                f"quarterdeck/releases/{CANARY_SERVICE}", bad_canary_record(datetime.now(UTC))
            )

    def _finish(self, name: str) -> None:
        self.holding.difference_update(SCENE_INSTANCES.get(name, ()))
        if name == "slow-dependency":
            self.fleet.heal(SLOW_DEPENDENCY)
        elif name == "failing-instance":
            self.fleet.heal(FAILING_INSTANCE)
        elif name == "retry-storm":
            self._end_storm()
        elif name == "bad-canary":
            self.fleet.heal(CANARY_INSTANCE)

    def _canary_active(self) -> bool:
        found = self.double.kv_get(f"quarterdeck/releases/{CANARY_SERVICE}")
        if found is None:
            return False
        try:
            return json.loads(found).get("active") == BAD_CANARY_VERSION
        except (ValueError, AttributeError):
            return False

    def _end_storm(self) -> None:
        self._storm_stop.set()
        if self._storm is not None:
            self._storm.join(timeout=5)
            self._storm = None


def retry_storm(
    urls: list[str], stop: threading.Event, chooser: random.Random, pace: float = 1.0
) -> None:
    """Retry a few orders with the same keys until `stop`, never backing off.

    Every STORM_MISMATCH_EVERY-th round carries another payload under the same keys (the
    client's bug): the guard answers those 422 payload_mismatch, the others 409 or a replay.
    """
    keys = [str(uuid.UUID(int=chooser.getrandbits(128), version=4)) for _ in range(STORM_KEYS)]
    orders = {key: {"item": chooser.choice(ITEMS), "qty": 1} for key in keys}
    attempt = 0
    while not stop.wait(STORM_RETRY_S * pace):
        attempt += 1
        for key in keys:
            order = orders[key]
            if attempt % STORM_MISMATCH_EVERY == 0:
                order = {**order, "qty": order["qty"] + attempt}
            post_order(chooser.choice(urls), key, order, timeout=2.0)


def bad_canary_record(now: datetime) -> str:
    """Return the releases key of orders once the bad candidate went out (at `now`)."""
    record = json.loads(release_record(SERVICES[CANARY_SERVICE], now, canary=False))
    record["history"].append(
        {
            "version": BAD_CANARY_VERSION,
            "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "by": "deploy-bot",
        }
    )
    record["active"], record["previous"] = BAD_CANARY_VERSION, SERVICES[CANARY_SERVICE].version
    return json.dumps(record)
