"""The objects one Quarterdeck process shares: config, store, live feed, metrics, clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from app.collection.unrecorded import UnrecordedRuns
from app.config import Config
from app.live import ChangeFeed
from app.metrics import Metrics
from app.models import utcnow
from app.store import Store


@dataclass
class Quarterdeck:
    """Everything a request, a job or a command needs, passed explicitly."""

    config: Config
    store: Store
    feed: ChangeFeed = field(default_factory=ChangeFeed)
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], datetime] = utcnow
    # Passes the store could not record, shown on the Sources page until it takes them.
    unrecorded: UnrecordedRuns = field(default_factory=UnrecordedRuns)
    # This process's name among the replicas (app/replicas), set by `quarterdeck serve`.
    replica: str = ""

    @classmethod
    def from_config(cls, config: Config) -> Quarterdeck:
        """Open the store the config names."""
        return cls(config=config, store=Store(config.store.url))
