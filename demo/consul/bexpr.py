"""A subset of Consul's `?filter=` language (go-bexpr): enough for the queries Quarterdeck makes.

Supported: `Sel == "v"`, `!=`, `contains`, `not contains`, `"v" in Sel`, `not in`, `matches`,
`not matches`, `is empty`, `is not empty`, combined with `and`, `or`, `not` and parentheses.
A selector walks dotted keys through the JSON record (`Service.Meta.version`, or
`Node.Meta["availability-zone"]` for keys with other characters); through a list it collects
every element's value, so `Checks.Status contains "critical"` works.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SELECTOR = rf"[A-Za-z_][\w-]*(?:\.[\w-]+|\[{_QUOTED}\])*"
_SEGMENT = re.compile(rf"\.?([\w-]+)|\[({_QUOTED})\]")
_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<op>==|!=|\(|\))
      | (?P<sel>{_SELECTOR})
      | "(?P<dq>(?:[^"\\]|\\.)*)"
      | `(?P<bq>[^`]*)`
      | (?P<word>[^\s()"`=!]+)
    )""",
    re.VERBOSE,
)
_MISSING = object()


class FilterError(ValueError):
    """The expression is not one this double understands."""


def compile_filter(expression: str) -> Predicate:
    """Compile a filter expression into a predicate over one JSON record."""
    parser = _Parser(_tokenize(expression))
    predicate = parser.parse_or()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek()[1]!r} at the end of the expression")
    return predicate


def _tokenize(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expression):
        if expression[pos:].strip() == "":
            break
        match = _TOKEN.match(expression, pos)
        if match is None:
            raise FilterError(f"cannot read the expression at {expression[pos:]!r}")
        pos = match.end()
        if match.group("op"):
            tokens.append(("op", match.group("op")))
        elif match.group("sel"):
            tokens.append(("word", match.group("sel")))
        elif match.group("dq") is not None:
            tokens.append(("str", _unquote(f'"{match.group("dq")}"')))
        elif match.group("bq") is not None:
            tokens.append(("str", match.group("bq")))
        else:
            tokens.append(("word", match.group("word")))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self._tokens = tokens
        self._pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self._pos + offset
        return self._tokens[index] if index < len(self._tokens) else None

    def _is_word(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token[0] == "word" and token[1] == word

    def _take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("the expression ends too early")
        self._pos += 1
        return token

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self._is_word("or"):
            self._take()
            right = self.parse_and()
            left = _either(left, right)
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_not()
        while self._is_word("and"):
            self._take()
            right = self.parse_not()
            left = _both(left, right)
        return left

    def parse_not(self) -> Predicate:
        if self._is_word("not"):
            self._take()
            inner = self.parse_not()
            return lambda record: not inner(record)
        if self.peek() == ("op", "("):
            self._take()
            inner = self.parse_or()
            if self._take() != ("op", ")"):
                raise FilterError("missing ')'")
            return inner
        return self._parse_match()

    def _parse_match(self) -> Predicate:
        first = self._take()
        negated_in = self._is_word("not") and self._is_word("in", 1)
        if first[0] == "str" or self._is_word("in") or negated_in:
            return self._parse_in(first[1])
        selector = _selector(first[1])
        negate = False
        if self._is_word("not"):
            self._take()
            negate = True
        kind, op = self._take()
        if (kind, op) in (("op", "=="), ("op", "!=")) and not negate:
            value = self._value()
            equal = _equals_predicate(selector, value)
            return equal if op == "==" else (lambda record: not equal(record))
        if kind == "word" and op == "contains":
            return _negate(_contains_predicate(selector, self._value()), negate)
        if kind == "word" and op == "matches":
            return _negate(_matches_predicate(selector, self._value()), negate)
        if kind == "word" and op == "is" and not negate:
            empty_negated = self._is_word("not")
            if empty_negated:
                self._take()
            if self._take() != ("word", "empty"):
                raise FilterError("expected 'empty' after 'is'")
            return _negate(lambda record: _is_empty(selector(record)), empty_negated)
        raise FilterError(f"unsupported operator {op!r}")

    def _parse_in(self, value: str) -> Predicate:
        negate = False
        if self._is_word("not"):
            self._take()
            negate = True
        if self._take() != ("word", "in"):
            raise FilterError("expected 'in' after a value")
        kind, name = self._take()
        if kind != "word":
            raise FilterError(f"expected a selector after 'in', got {name!r}")
        return _negate(_contains_predicate(_selector(name), value), negate)

    def _value(self) -> str:
        kind, text = self._take()
        if kind == "op":
            raise FilterError(f"expected a value, got {text!r}")
        return text


def _selector(path: str) -> Callable[[Any], Any]:
    if not re.fullmatch(_SELECTOR, path):
        raise FilterError(f"{path!r} is not a selector")
    parts = [name if name else _unquote(quoted) for name, quoted in _SEGMENT.findall(path)]

    def select(record: Any) -> Any:
        current = record
        for part in parts:
            current = _step(current, part)
        return current

    return select


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def _step(current: Any, part: str) -> Any:
    if isinstance(current, dict):
        return current.get(part, _MISSING)
    if isinstance(current, list):
        collected: list[Any] = []
        for item in current:
            value = _step(item, part)
            if isinstance(value, list):
                collected.extend(value)
            elif value is not _MISSING:
                collected.append(value)
        return collected
    return _MISSING


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _equals_predicate(selector: Callable[[Any], Any], value: str) -> Predicate:
    def equal(record: Any) -> bool:
        found = selector(record)
        if found is _MISSING or found is None or isinstance(found, (dict, list)):
            return False
        return _text(found) == value

    return equal


def _contains_predicate(selector: Callable[[Any], Any], value: str) -> Predicate:
    def contains(record: Any) -> bool:
        found = selector(record)
        if isinstance(found, list):
            return value in [_text(item) for item in found]
        if isinstance(found, dict):
            return value in found
        if isinstance(found, str):
            return value in found
        return False

    return contains


def _matches_predicate(selector: Callable[[Any], Any], pattern: str) -> Predicate:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise FilterError(f"invalid regular expression {pattern!r}: {exc}") from exc

    def matches(record: Any) -> bool:
        found = selector(record)
        values = found if isinstance(found, list) else [found]
        return any(v is not _MISSING and v is not None and regex.search(_text(v)) for v in values)

    return matches


def _is_empty(found: Any) -> bool:
    if found is _MISSING or found is None:
        return True
    return isinstance(found, (str, list, dict)) and len(found) == 0


def _negate(predicate: Predicate, negate: bool) -> Predicate:
    return (lambda record: not predicate(record)) if negate else predicate


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda record: left(record) or right(record)


def _both(left: Predicate, right: Predicate) -> Predicate:
    return lambda record: left(record) and right(record)
