"""`[runbooks] file` and `[[rules]]`: a bad file or rule is a start-up error naming where."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.config import ConfigError, load_config

GOOD = """runbooks:
  evacuate:
    steps:
      - action: drain
      - wait: 2
"""


def write(tmp_path, runbook_text: str, rules: str = "") -> str:
    (tmp_path / "runbooks.yaml").write_text(runbook_text)
    config = tmp_path / "quarterdeck.toml"
    config.write_text(f'[runbooks]\nfile = "runbooks.yaml"\n{rules}')
    return str(config)


def test_the_file_is_read_relative_to_the_configuration(tmp_path):
    config = load_config(write(tmp_path, GOOD))

    book = config.runbook_book["evacuate"]
    assert [(s.kind, s.line) for s in book.steps] == [("action", 4), ("wait", 5)]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("runbooks:\n  evacuate:\n    steps:\n      - action: explode\n", 4,
         "action 'explode' is not one of drain, ready"),
        ("runbooks:\n  evacuate:\n    steps:\n      - action: drain\n      - wait: -1\n", 5,
         "wait must be from 0 to 3600 seconds"),
        ("runbooks:\n  evacuate:\n    steps:\n      - action: drain\n        colour: red\n", 5,
         "unknown key 'colour'"),
        ("runbooks:\n  evacuate:\n    steps:\n      - action: drain\n      - wait_for: nope\n"
         "        timeout_s: 5\n", 5, "condition 'nope' is not one of"),
        ("runbooks:\n  evacuate:\n    steps:\n      - action: drain\n  evacuate:\n    steps: []\n",
         5, "key 'evacuate' appears twice"),
        ("runbooks:\n  evacuate:\n    steps:\n      - action: drain\n     bad: [\n", 5,
         "not valid YAML"),
        ("runbooks:\n  evacuate:\n    steps:\n      - wait: 5\n", 3, "has no action step"),
    ],
)  # fmt: skip
def test_a_bad_runbook_names_the_file_and_line(tmp_path, text, line, says):
    with pytest.raises(ConfigError) as bad:
        load_config(write(tmp_path, text))

    assert f"runbooks.yaml:{line}: " in str(bad.value)
    assert says in str(bad.value)


def test_a_bad_runbook_file_stops_the_command_line_at_start_up(tmp_path, capsys):
    config = write(tmp_path, "runbooks:\n  evacuate:\n    steps:\n      - action: explode\n")

    assert main(["--config", config, "runbook", "list"]) == 2

    err = capsys.readouterr().err
    assert "configuration error" in err and "runbooks.yaml:4:" in err


def test_a_missing_runbook_file_is_named(tmp_path):
    config = tmp_path / "quarterdeck.toml"
    config.write_text('[runbooks]\nfile = "gone.yaml"\n')

    with pytest.raises(ConfigError, match=r"\[runbooks\] file = 'gone.yaml': cannot read"):
        load_config(str(config))


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ('when = "sunspots"\nrunbook = "evacuate"', "when = 'sunspots' is not one of"),
        ('when = "probe_failing"\nrunbook = "missing"', "runbook = 'missing' is not in"),
        ('when = "probe_failing"\nrunbook = "evacuate"', "names services, but runbook"),
        ('when = "instance_critical_with_traffic"\nrunbook = "evacuate"\nmode = "yolo"',
         "mode must be one of propose, auto, dry-run"),
        ('when = "error_ratio_above"\nrunbook = "evacuate"\nparams = {threshold = 5}',
         "threshold must be a ratio"),
        ('when = "slo_burn"\nrunbook = "evacuate"\nparams = {severity = "page"}',
         "severity must be fast or slow"),
        ('when = "slo_burn"\nrunbook = "evacuate"', "slo_burn names services, but runbook"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_a_start_up_error_naming_it(tmp_path, rule, says):
    rules = f'[[rules]]\nname = "r1"\n{rule}\n'

    with pytest.raises(ConfigError) as bad:
        load_config(write(tmp_path, GOOD, rules))

    assert "[[rules]] 'r1'" in str(bad.value) and says in str(bad.value)


def test_the_runbook_list_command_prints_each_step(tmp_path, capsys):
    config = write(tmp_path, GOOD)
    path = tmp_path / "quarterdeck.toml"
    path.write_text(path.read_text() + f'[store]\nurl = "sqlite:///{tmp_path}/qd.db"\n')
    assert main(["--config", config, "db", "upgrade"]) == 0

    assert main(["--config", config, "runbook", "list"]) == 0

    out = capsys.readouterr().out
    assert "evacuate (target: instance)" in out and "2. wait 2 s" in out


def test_the_documented_rules_and_automation_examples_load(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    examples = [
        docs.split(f"### `{section}`", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
        for section in ("[[rules]]", "[automation]")
    ]
    config = write(tmp_path, GOOD, "\n".join(examples))

    loaded = load_config(config)

    assert [r.mode for r in loaded.rules] == ["propose", "auto"]
    assert loaded.automation.webhook_token_env == "QUARTERDECK_WEBHOOK_TOKEN"


def test_the_documented_slo_burn_rule_loads_with_a_service_runbook(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = docs.split("### `[[rules]]`", 1)[1]
    example = section.split("```toml\n")[2].split("```", 1)[0]
    shed = "  degrade-orders:\n    target: service\n    steps:\n      - action: degrade\n"

    loaded = load_config(write(tmp_path, GOOD + shed, example))

    (rule,) = loaded.rules
    assert (rule.when, rule.params, rule.runbook) == ("slo_burn", {"severity": "fast"},
                                                      "degrade-orders")  # fmt: skip
