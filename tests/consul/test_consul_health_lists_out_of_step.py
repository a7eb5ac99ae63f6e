"""The two non-passing lists answer out of step: a failure is applied from the list that shows
it at once, a recovery waits until the other list has caught up (it may have moved there)."""

from __future__ import annotations

import threading
import time

from app.collection.runner import run_pass
from collectors.consul import ConsulCollector

# Far longer than the test: only the list that shows the failure can make it appear in time.
PAIR_WAIT_S = 60.0
WARNING_LIST = "/v1/health/state/warning"


def test_a_failure_is_not_held_back_by_the_other_list_and_a_recovery_waits_for_it(
    double, fleet, counting_proxy, make_consul_qd, make_api, eventually
):
    qd = make_consul_qd(url=counting_proxy.url, wait_s=30)
    api = make_api(qd)
    collector = ConsulCollector(counting_proxy.url, wait_s=30, clock=qd.clock, pair_wait_s=60)
    assert run_pass(qd, collector).ok
    stop = threading.Event()

    def collect_loop() -> None:
        while not stop.is_set():
            run_pass(qd, collector)

    loop = threading.Thread(target=collect_loop, daemon=True)
    loop.start()
    try:
        eventually(lambda: any(t.name == "consul-watch-warning" for t in threading.enumerate()))
        release = counting_proxy.hold(WARNING_LIST)

        double.set_check("service:orders-2", "critical", "HTTP GET /healthz: 503")
        # The warning list's answer to this move is held; the critical list's shows the failure.
        found = eventually(lambda: api.instance("orders", "orders-2")["health"] == "critical", 10)
        assert found and not release.is_set()

        double.set_check("service:orders-2", "passing", "HTTP GET /healthz: 200 OK")
        # Gone from the critical list: recovered, or now a warning the held list would show.
        time.sleep(2)
        assert api.instance("orders", "orders-2")["health"] == "critical"
        release.set()
        eventually(lambda: api.instance("orders", "orders-2")["health"] == "passing", 10)
    finally:
        stop.set()
        collector.close()
        double.stop()
        collector.close(timeout=5)
        loop.join(timeout=10)
