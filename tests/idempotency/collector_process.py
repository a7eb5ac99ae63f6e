"""Run collection passes of the Redis collector forever (a test kills it with SIGKILL).

Usage: python collector_process.py STORE_URL REDIS_URL; prints "pass N" after each pass.
"""

from __future__ import annotations

import sys

from app.collection.runner import run_pass
from app.config import Config, RedisConfig, StoreConfig
from app.context import Quarterdeck
from collectors.redis_idem import RedisIdemCollector


def main(store_url: str, redis_url: str) -> None:
    config = Config(store=StoreConfig(url=store_url), redis=RedisConfig(url=redis_url))
    qd = Quarterdeck.from_config(config)
    settings = RedisConfig(url=redis_url, consumer="collector-under-test", batch=300)
    collector = RedisIdemCollector.from_config(
        RedisConfig(**{**settings.__dict__, "max_per_pass": 900}), clock=qd.clock
    )
    passes = 0
    while True:
        run_pass(qd, collector)
        passes += 1
        print(f"pass {passes}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
