"""An SLO whose events are Prometheus's requests: the error-ratio query over each window, from
what a real Prometheus scraped off a real target."""

from __future__ import annotations

import pytest

from app.config import PrometheusConfig, SloConfig
from app.context import Quarterdeck
from app.queries.slo import slo_states
from collectors.prometheus import PrometheusReader
from tests.conftest import test_config
from tests.fixtures.processes import wait_for


def test_error_ratios_over_each_window_give_the_burn_rates(
    prometheus_factory, fleet_metrics, sqlite_url
):
    fleet_metrics.serve("orders", per_tick=2, errors_in_ten=3)  # 30 % answered 500
    fleet_metrics.serve("payments", per_tick=1)  # no errors
    prometheus = prometheus_factory({"fleet": [fleet_metrics.target.address]})
    config = test_config(
        sqlite_url,
        prometheus=PrometheusConfig(url=prometheus.url),
        slo=(
            SloConfig(service="orders", objective=99.0, sli="prometheus"),
            SloConfig(service="payments", objective=99.0, sli="prometheus"),
        ),
    )
    reader = PrometheusReader(prometheus.url, 5)
    # Wait until Prometheus holds a few scrapes of both before judging (its answers are reused).
    query = "sum by (service) (rate(http_server_request_duration_seconds_count[5m]))"

    def steady():
        rates = {labels.get("service"): v for labels, v in reader.instant("rates", query)}
        return rates if rates.get("orders") and rates.get("payments") is not None else None

    wait_for(steady, "scrapes of both services", timeout=60)
    qd = Quarterdeck.from_config(config)
    try:
        with qd.store.session() as db:
            orders, payments = slo_states(db, config, qd.clock(), prometheus=reader)
    finally:
        reader.close()
        qd.store.dispose()
    # Every window holds the same traffic, 3 of 10 failed: bad ratio 0.3, burn 0.3 / 0.01 = 30.
    for window in ("5m", "30m", "1h", "6h", "1d", "3d", "28d"):
        assert orders.availability.bad_ratio[window] == pytest.approx(0.3, abs=0.05), window
        assert orders.availability.burn_rate[window] == pytest.approx(30, abs=5), window
    assert orders.alert == "fast"  # 1h and 5m both above 14.4
    assert orders.availability.error_budget_left == 0.0
    assert orders.problem == ""
    # No errors is a ratio of 0, burning nothing: within budget, all of it left.
    assert payments.availability.burn_rate["1h"] == 0.0
    assert payments.alert == "ok"
    assert payments.availability.error_budget_left == 1.0
