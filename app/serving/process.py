"""One Quarterdeck process: the HTTP server and the collectors, started and stopped together."""

from __future__ import annotations

import gc
import logging
import resource

from app.context import Quarterdeck

log = logging.getLogger("quarterdeck")


def serve_quarterdeck(qd: Quarterdeck, *, banner: str | None = None) -> int:
    """Serve the web UI, API and live streams (and, when leading, the jobs) until SIGTERM."""
    from app.factory import create_app
    from app.replicas.running import Replica
    from app.serving.server import Server

    app = create_app(qd=qd)
    if banner:
        app.config["DEMO_BANNER"] = banner
    server_config = qd.config.server
    _raise_open_files_limit(server_config.max_streams + server_config.threads + 256)
    host, _, port = server_config.bind.rpartition(":")
    server = Server(app, host, int(port), threads=server_config.threads)
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's scans, which otherwise make the slowest page requests slower.
    gc.freeze()
    # One replica among several leads: it alone runs the collectors and jobs.
    replica = Replica(qd).start()
    log.info("Quarterdeck listening on %s/", server.url)
    try:
        server.run()
    finally:
        qd.feed.close()
        replica.stop()
    log.info("Quarterdeck stopped")
    return 0


def _raise_open_files_limit(wanted: int) -> None:
    """Every open stream is a socket: lift the soft limit on open files towards `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "only %d open files allowed (ulimit -n): fewer than [server] max_streams live "
            "streams can be served",
            target,
        )
