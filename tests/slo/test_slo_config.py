"""`[[slo]]` entries: the documented example loads, and every bad entry is a start-up error
that names the entry and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_config

PROBE = '[[probes]]\nname = "checkout"\nservice = "orders"\nurl = "https://shop.example/h"\n'


def load(tmp_path, text: str):
    path = tmp_path / "quarterdeck.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


def test_the_documented_example_loads(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = docs.split("### `[[slo]]`", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    orders, payments = load(tmp_path, PROBE + example).slo
    assert (orders.service, orders.objective, orders.window_d, orders.sli) == (
        "orders", 99.9, 28, "probes",
    )  # fmt: skip
    assert (orders.latency_ms, orders.latency_objective) == (800.0, 95.0)
    assert (payments.sli, payments.objective, payments.latency_ms) == ("checks", 99.5, 0.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('sli = "logs"', "[[slo]] 'orders' sli = 'logs' must be one of probes, checks"),
        ("objective = 100", "[[slo]] 'orders' objective must be a percentage above 0"),
        ("objective = 0", "[[slo]] 'orders' objective must be a percentage above 0"),
        ("window_d = 0", "[[slo]] 'orders' window_d must be from 1 to 400 days"),
        ('sli = "prometheus"', "sli = 'prometheus' needs a [prometheus] section"),
        ('sli = "checks"\nlatency_ms = 300', "latency_ms needs sli = 'probes' or 'spans'"),
        ("latency_objective = 100.5", "latency_objective must be a percentage"),
        ('objective = "high"', "[slo[0]] objective must be a number, not a string"),
        ("owner = 1", "unknown key 'owner' in [slo[0]]"),
    ],
)
def test_a_bad_entry_is_a_start_up_error_naming_it(tmp_path, entry, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, PROBE + f'[[slo]]\nservice = "orders"\n{entry}\n')
    assert message in str(error.value)
    assert "quarterdeck.toml" in str(error.value)


def test_probes_as_the_source_need_a_probe_of_the_service(tmp_path):
    with pytest.raises(ConfigError, match="no \\[\\[probes\\]\\] entry has service = 'payments'"):
        load(tmp_path, PROBE + '[[slo]]\nservice = "payments"\n')


def test_one_slo_per_service(tmp_path):
    twice = '[[slo]]\nservice = "orders"\n' * 2
    with pytest.raises(ConfigError, match="'orders' is used twice"):
        load(tmp_path, PROBE + twice)
