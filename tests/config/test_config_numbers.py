"""Numbers in the configuration: ports are ASCII digits, thresholds finite numbers in range;
anything else is a start-up error, not a crash."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[server]\nbind = "127.0.0.1:８０８０"\n', "[server] bind"),  # fullwidth digits
        ('[server]\nbind = "127.0.0.1:²"\n', "[server] bind"),
        ('[server]\nbind = "127.0.0.1:' + "9" * 5000 + '"\n', "[server] bind"),
        ('[[static_services]]\nname = "a"\ninstances = ["10.0.0.1:²"]\n', "instance"),
        ('[[static_services]]\nname = "a"\ninstances = ["10.0.0.1:0"]\n', "instance"),
    ],
)
def test_a_port_that_is_not_ascii_digits_in_range_names_the_key(tmp_path, text, fragment):
    path = tmp_path / "quarterdeck.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert fragment in str(raised.value) and str(path) in str(raised.value)


def test_a_bind_on_port_zero_is_still_accepted(tmp_path):
    path = tmp_path / "quarterdeck.toml"
    path.write_text('[server]\nbind = "127.0.0.1:0"\n', encoding="utf-8")
    assert load_config(path, environ={}).server.bind == "127.0.0.1:0"


def test_the_verdict_thresholds_are_numbers_and_ratios(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text("[verdict]\nerror_ratio = 0.1\nmin_rate_rps = 1\n")
    config = load_config(path, environ={})
    assert (config.verdict.error_ratio, config.verdict.min_rate_rps) == (0.1, 1.0)
    for bad, says in (
        ("error_ratio = 5", "between 0 and 1"),
        ('error_ratio = "high"', "must be a number"),
        ("error_ratio = nan", "finite"),
    ):
        path.write_text(f"[verdict]\n{bad}\n")
        with pytest.raises(ConfigError, match=says):
            load_config(path, environ={})
    env = {"QUARTERDECK_VERDICT_ERROR_RATIO": "0.2"}
    assert load_config(None, environ=env).verdict.error_ratio == 0.2
