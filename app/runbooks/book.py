"""Read and check the runbook file (`[runbooks] file`): every error names the file and line.

The schema is checked by hand (no JSON Schema library is a dependency): each runbook is a
mapping with `steps`, each step exactly one of `action`, `wait`, `wait_for` or `check`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.config import Config, ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
TARGETS = ("instance", "service")
STEP_KINDS = ("action", "wait", "wait_for", "check")
# A step waits at most this long: a runbook holds its target's lock while it runs.
MAX_WAIT_S = 3600
MODES = ("propose", "auto", "dry-run")


@dataclass(frozen=True)
class RunbookStep:
    """One step: an action by name, a wait, a condition to wait for, or one that must hold."""

    kind: str  # action | wait | wait_for | check
    line: int
    action: str = ""
    only: tuple[str, ...] = ()
    seconds: float = 0.0
    condition: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 0.0
    label: str = ""


@dataclass(frozen=True)
class Runbook:
    """A named procedure run against one target, planned and audited as a whole."""

    name: str
    description: str
    target: str  # instance | service
    steps: tuple[RunbookStep, ...]
    line: int
    file: str


class _Lined(dict):
    """A YAML mapping that remembers the line of itself and of each key."""

    line = 0
    key_lines: dict


class _LinedList(list):
    line = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    """The safe loader, keeping lines and refusing duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Lined:
    loader.flatten_mapping(node)
    value = _Lined()
    value.line, value.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Bad(line, f"key {key!r} must be text")
        if key in value:
            raise _Bad(line, f"key '{key}' appears twice")
        value[key] = loader.construct_object(value_node, deep=True)
        value.key_lines[key] = line
    return value


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _LinedList:
    value = _LinedList(loader.construct_object(item, deep=True) for item in node.value)
    value.line = node.start_mark.line + 1
    value.item_lines = [item.start_mark.line + 1 for item in node.value]
    return value


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class _Bad(Exception):  # noqa: N818 (carries a line to the file's error)
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def runbook_path(file: str, config_where: str) -> Path:
    """Resolve `[runbooks] file` against the configuration file's folder."""
    path = Path(file)
    if path.is_absolute() or config_where.startswith("("):
        return path
    return Path(config_where).parent / path


def load_runbook_file(file: str, config_where: str = "(config)") -> dict[str, Runbook]:
    """Read the file named by `[runbooks] file`; raise ConfigError naming the file and line."""
    path = runbook_path(file, config_where)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{config_where}: [runbooks] file = '{file}': cannot read {path}: {exc.strerror}"
        ) from exc
    return parse_runbooks(text, str(path))


def parse_runbooks(text: str, where: str) -> dict[str, Runbook]:
    """Parse and check a runbook document; raise ConfigError as `FILE:LINE: problem`."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except _Bad as exc:
        raise ConfigError(f"{where}:{exc.line}: {exc.message}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{where}:{line}: not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    try:
        return _runbooks(doc, where)
    except _Bad as exc:
        raise ConfigError(f"{where}:{exc.line}: {exc.message}") from exc


def _runbooks(doc: Any, where: str) -> dict[str, Runbook]:
    if not isinstance(doc, _Lined) or set(doc) != {"runbooks"}:
        line = doc.line if isinstance(doc, _Lined) else 1
        raise _Bad(line, "the file must be a mapping with one key, 'runbooks'")
    books = doc["runbooks"]
    if not isinstance(books, _Lined) or not books:
        raise _Bad(doc.key_lines["runbooks"], "'runbooks' must map runbook names to runbooks")
    found = {}
    for name, body in books.items():
        line = books.key_lines[name]
        if not NAME.fullmatch(name):
            raise _Bad(line, f"runbook name '{name}' must be letters, digits, '-', '_' or '.'")
        found[name] = _runbook(name, body, line, where)
    return found


def _runbook(name: str, body: Any, line: int, where: str) -> Runbook:
    label = f"runbook '{name}'"
    if not isinstance(body, _Lined):
        raise _Bad(line, f"{label} must be a mapping with 'steps'")
    _known_keys(body, {"description", "target", "steps"}, label)
    description = _text(body, "description", label, "")
    target = _text(body, "target", label, "instance")
    if target not in TARGETS:
        raise _Bad(body.key_lines["target"], f"{label}: target must be one of {', '.join(TARGETS)}")
    steps = body.get("steps")
    if not isinstance(steps, _LinedList) or not steps:
        raise _Bad(body.key_lines.get("steps", body.line), f"{label}: steps must be a list")
    parsed = tuple(
        _step(step, step_line, f"{label} step {number}", target)
        for number, (step, step_line) in enumerate(zip(steps, steps.item_lines, strict=True), 1)
    )
    if not any(s.kind == "action" for s in parsed):
        raise _Bad(
            body.key_lines["steps"], f"{label}: has no action step, so it would change nothing"
        )
    return Runbook(name, description, target, parsed, line, where)


def _step(body: Any, line: int, label: str, target: str) -> RunbookStep:
    from app.actions.instances import INSTANCE_ACTIONS
    from app.actions.running import ACTIONS
    from app.runbooks.conditions import CONDITIONS

    if not isinstance(body, _Lined):
        raise _Bad(line, f"{label} must be a mapping such as {{action: drain}}")
    kinds = [k for k in STEP_KINDS if k in body]
    if len(kinds) != 1:
        raise _Bad(line, f"{label} must have exactly one of {', '.join(STEP_KINDS)}")
    kind = kinds[0]
    key_line = body.key_lines[kind]
    step_label = _text(body, "name", label, "")
    if kind == "action":
        _known_keys(body, {"action", "only", "params", "name"}, label)
        action = body["action"]
        if action not in ACTIONS:
            raise _Bad(key_line, f"{label}: action '{action}' is not one of {', '.join(ACTIONS)}")
        if action in INSTANCE_ACTIONS and target != "instance":
            raise _Bad(key_line, f"{label}: {action} acts on an instance: set target: instance")
        only = body.get("only", [])
        if not isinstance(only, list) or not all(isinstance(o, str) and o for o in only):
            raise _Bad(body.key_lines.get("only", line), f"{label}: only must be a list of names")
        params = _params(body, label)
        return RunbookStep(kind, line, action=action, only=tuple(only), params=params,
                           label=step_label)  # fmt: skip
    if kind == "wait":
        _known_keys(body, {"wait", "name"}, label)
        seconds = _seconds(body["wait"], key_line, f"{label}: wait")
        return RunbookStep(kind, line, seconds=seconds, label=step_label)
    allowed = {kind, "params", "name"} | ({"timeout_s"} if kind == "wait_for" else set())
    _known_keys(body, allowed, label)
    condition = body[kind]
    if condition not in CONDITIONS:
        raise _Bad(
            key_line,
            f"{label}: condition '{condition}' is not one of {', '.join(sorted(CONDITIONS))}",
        )
    params = _params(body, label)
    problem = CONDITIONS[condition].check_params(params)
    if problem:
        raise _Bad(body.key_lines.get("params", key_line), f"{label}: {problem}")
    if CONDITIONS[condition].needs_instance and target != "instance":
        raise _Bad(key_line, f"{label}: {condition} reads an instance: set target: instance")
    timeout = 0.0
    if kind == "wait_for":
        if "timeout_s" not in body:
            raise _Bad(line, f"{label}: wait_for needs timeout_s")
        timeout = _seconds(body["timeout_s"], body.key_lines["timeout_s"], f"{label}: timeout_s")
    return RunbookStep(kind, line, condition=condition, params=params, timeout_s=timeout,
                       label=step_label)  # fmt: skip


def _known_keys(body: _Lined, allowed: set[str], label: str) -> None:
    for key in body:
        if key not in allowed:
            raise _Bad(body.key_lines[key], f"{label}: unknown key '{key}'")


def _text(body: _Lined, key: str, label: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise _Bad(body.key_lines[key], f"{label}: {key} must be text")
    return value


def _params(body: _Lined, label: str) -> dict[str, Any]:
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise _Bad(body.key_lines["params"], f"{label}: params must be a mapping")
    return dict(params)


def _seconds(value: Any, line: int, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Bad(line, f"{label} must be a number of seconds")
    if not 0 <= value <= MAX_WAIT_S:
        raise _Bad(line, f"{label} must be from 0 to {MAX_WAIT_S} seconds")
    return float(value)


def check_rules(config: Config, where: str) -> None:
    """Check each `[[rules]]` entry against the conditions and the runbooks it names."""
    from app.rules.conditions import RULE_CONDITIONS

    for rule in config.rules:
        label = f"[[rules]] '{rule.name}'"
        if rule.when not in RULE_CONDITIONS:
            known = ", ".join(sorted(RULE_CONDITIONS))
            raise ConfigError(f"{where}: {label} when = '{rule.when}' is not one of {known}")
        if rule.mode not in MODES:
            raise ConfigError(f"{where}: {label} mode must be one of {', '.join(MODES)}")
        book = config.runbook_book.get(rule.runbook)
        if book is None:
            raise ConfigError(
                f"{where}: {label} runbook = '{rule.runbook}' is not in [runbooks] file"
            )
        condition = RULE_CONDITIONS[rule.when]
        problem = condition.check_params(rule.params)
        if problem:
            raise ConfigError(f"{where}: {label} params: {problem}")
        if condition.target == "service" and book.target == "instance":
            raise ConfigError(
                f"{where}: {label}: {rule.when} names services, but runbook '{rule.runbook}' "
                "acts on an instance"
            )
        if rule.max_per_hour < 1:
            raise ConfigError(f"{where}: {label} max_per_hour must be at least 1")
