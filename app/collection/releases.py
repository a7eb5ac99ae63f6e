"""The releases job: note each version the catalog's instances run, and the releases keys."""

from __future__ import annotations

import logging
import os
import time

from app.collection.runner import record_run
from app.collection.unrecorded import RunRecord
from app.context import Quarterdeck
from app.store.releases import record_catalog_releases, record_release_keys
from collectors.base import SourceUnavailable
from collectors.consul_releases import read_release_keys

log = logging.getLogger(__name__)
JOB_NAME = "releases"
JOB_KIND = "job"


def track_releases(qd: Quarterdeck) -> RunRecord:
    """Record new versions from the store's catalog and, with [consul], from the releases keys.

    A Consul that cannot be read fails the run (shown with the jobs on the Sources page); the
    versions the catalog holds are recorded all the same.
    """
    started_at = qd.clock()
    start = time.perf_counter()
    counts = {"catalog_new": 0, "kv_keys": 0, "kv_new": 0}
    problem = ""
    keys = None
    consul = qd.config.consul
    if consul is not None:
        verify: bool | str = consul.verify_tls
        if consul.verify_tls and consul.ca_file:
            verify = consul.ca_file
        try:
            keys = read_release_keys(
                consul.url,
                token=os.environ.get(consul.token_env) if consul.token_env else None,
                datacenter=consul.datacenter,
                verify=verify,
            )
        except SourceUnavailable as exc:
            problem = exc.reason
    try:
        with qd.store.session(write=True) as db:
            counts["catalog_new"] = record_catalog_releases(db, qd.clock())
            if keys is not None:
                counts["kv_keys"] = len(keys.keys)
                counts["kv_new"] = record_release_keys(db, keys.keys, qd.clock())
    except Exception as exc:
        log.exception("releases job failed")
        problem = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    if keys is not None and keys.problems and not problem:
        problem = "; ".join(keys.problems[:3])
    record = RunRecord(
        JOB_NAME, JOB_KIND, started_at, time.perf_counter() - start, not problem, problem, counts
    )
    record_run(qd, record)
    return record
