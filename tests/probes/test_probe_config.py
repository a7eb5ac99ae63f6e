"""`[[probes]]` in the config file: good entries load, bad ones name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_config


def load(tmp_path, text: str):
    path = tmp_path / "quarterdeck.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


GOOD = """
[[probes]]
name = "checkout"
service = "orders"
url = "https://shop.example/health/checkout"
method = "POST"
interval_s = 15
timeout_ms = 1500
expect_status = 200
expect_body = "ok"
expect_json = {path = "$.status", equals = "ok"}
latency_budget_ms = 800
headers = {"X-Probe" = "quarterdeck"}
headers_env = {Authorization = "CHECKOUT_TOKEN"}
body = '{"sku": "probe"}'
"""


def test_a_full_probe_entry_loads_every_key(tmp_path):
    (probe,) = load(tmp_path, GOOD).probes
    assert probe.method == "POST"
    assert probe.interval_s == 15
    assert probe.expect_json == {"path": "$.status", "equals": "ok"}
    assert probe.headers_env == {"Authorization": "CHECKOUT_TOKEN"}
    assert probe.latency_budget_ms == 800


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ('url = "ftp://shop.example/x"', "[probes[0]] url = 'ftp://shop.example/x' must start"),
        ('colour = "red"', "unknown key 'colour' in [probes[0]]"),
        ('expect_json = {path = "$..x", equals = "ok"}', "expect_json.path = '$..x'"),
        ('expect_json = {path = "$.status"}', "expect_json needs both path and equals"),
        (
            'expect_json = {path = "$.status", equals = "ok", is = 1}',
            "unknown key 'is' in expect_json",
        ),
        ('expect_json = {path = "$.status", equals = [1]}', "expect_json.equals must be"),
        ("expect_status = 42", "expect_status must be an HTTP status"),
        ('method = "FETCH"', "method = 'FETCH' must be one of"),
        ("timeout_ms = 0", "timeout_ms must be from 1 to 60000"),
        ('headers = {"Bad Header" = "x"}', "headers: 'Bad Header' is not a header name"),
        ('headers = {"X-A" = 1}', "[probes[0]] headers.X-A must be a string"),
        ('headers_env = "TOKEN"', "headers_env must be a table"),
    ],
)
def test_a_bad_probe_entry_is_a_start_up_error_naming_the_key(tmp_path, change, named):
    url = "" if change.startswith("url") else 'url = "http://127.0.0.1:1/h"\n'
    text = f'[[probes]]\nname = "checkout"\nservice = "orders"\n{url}{change}\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert named in str(caught.value)
    assert "quarterdeck.toml" in str(caught.value)


def test_a_probe_needs_a_service(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'service'"):
        load(tmp_path, '[[probes]]\nname = "checkout"\nurl = "http://127.0.0.1:1/h"\n')


def test_two_probes_with_one_name_are_refused(tmp_path):
    one = '[[probes]]\nname = "checkout"\nservice = "orders"\nurl = "http://127.0.0.1:1/h"\n'
    with pytest.raises(ConfigError, match="name 'checkout' is used twice"):
        load(tmp_path, one + one)


def test_the_documented_probe_example_loads(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = docs.split("### `[[probes]]`", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (probe,) = load(tmp_path, example).probes
    assert probe.headers_env == {"Authorization": "CHECKOUT_TOKEN"}
    assert probe.expect_json == {"path": "$.status", "equals": "ok"}


def test_a_secret_variable_named_like_an_override_is_not_read_as_one(tmp_path):
    path = tmp_path / "quarterdeck.toml"
    path.write_text(
        '[[probes]]\nname = "c"\nservice = "orders"\nurl = "http://127.0.0.1:1/"\n'
        'headers_env = {Authorization = "QUARTERDECK_SERVER_PROBE_TOKEN"}\n'
    )
    config = load_config(path, environ={"QUARTERDECK_SERVER_PROBE_TOKEN": "Bearer x"})
    assert config.probes[0].headers_env["Authorization"] == "QUARTERDECK_SERVER_PROBE_TOKEN"
