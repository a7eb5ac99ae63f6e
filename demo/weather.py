"""Simulated incidents for the demo: checks that fail and recover, a maintenance window.

Only the demo uses this; it changes the Consul double the way a real fleet changes a real
Consul agent, so every page shows live transitions without anyone clicking.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

from demo.consul import ConsulDouble
from demo.fleet_seed import SeededInstance

FAILURES = (
    ("warning", "HTTP GET {url}: 429 Too Many Requests Output: rate limited by upstream"),
    ("critical", "HTTP GET {url}: 503 Service Unavailable Output: connection pool exhausted"),
    ("critical", 'Get "{url}": dial tcp {address}: connect: connection refused'),
    ("warning", 'HTTP GET {url}: 200 OK Output: {{"status":"degraded","db_latency_ms":870}}'),
)


class DemoWeather:
    """Every little while, break one instance for a minute or two, then heal it."""

    def __init__(
        self,
        double: ConsulDouble,
        instances: Sequence[SeededInstance],
        seed: int | None = None,
        pace_s: float = 25.0,
    ) -> None:
        self.double = double
        self.instances = list(instances)
        self.random = random.Random(seed)
        self.pace_s = pace_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-weather", daemon=True)

    def start(self) -> DemoWeather:
        """Start changing the fleet in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop; instances keep whatever state they had."""
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        broken: dict[str, float] = {}
        tick = 0
        while not self._stop.wait(self.pace_s * self.random.uniform(0.6, 1.4)):
            tick += 1
            for service_id in [s for s, left in broken.items() if left <= tick]:
                self._heal(service_id)
                del broken[service_id]
            candidates = [i for i in self.instances if i.service_id not in broken]
            if not candidates:
                continue
            victim = self.random.choice(candidates)
            if tick % 7 == 3:
                self.double.enable_service_maintenance(
                    victim.service_id, reason=f"demo: rolling restart of {victim.service}"
                )
            else:
                status, text = self.random.choice(FAILURES)
                url = f"http://{victim.address}:{victim.port}/healthz"
                output = text.format(url=url, address=f"{victim.address}:{victim.port}")
                self.double.set_check(f"service:{victim.service_id}", status, output, victim.node)
            broken[victim.service_id] = tick + self.random.randint(2, 5)

    def _heal(self, service_id: str) -> None:
        victim = next(i for i in self.instances if i.service_id == service_id)
        self.double.disable_service_maintenance(service_id)
        url = f"http://{victim.address}:{victim.port}/healthz"
        self.double.set_check(
            f"service:{service_id}",
            "passing",
            f'HTTP GET {url}: 200 OK Output: {{"status":"ok"}}',
            victim.node,
        )
