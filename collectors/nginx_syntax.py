"""nginx configuration syntax: tokens, directives and blocks, numbers, times and sizes.

The tokenizer follows `ngx_conf_read_token` (src/core/ngx_conf_file.c, nginx 1.22): words end
at whitespace, `;` or `{`; quotes and `#` comments count only where a word starts; a backslash
escapes the next character. Numbers, times and sizes follow ngx_atoi, ngx_parse_time and
ngx_parse_size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_INT = 2**63 - 1  # NGX_MAX_INT_T_VALUE on a 64-bit build


class UpstreamConfError(ValueError):
    """A file nginx would refuse; names the file, the line and what is wrong."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


# -- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A word (quotes removed, escapes applied) or one of `;` `{` `}`, with its line."""

    kind: str  # "word", ";", "{", "}"
    text: str
    line: int


@dataclass
class Statement:
    """A directive: its name, arguments (with their lines) and, for a block, what it holds."""

    name: str
    args: list[str]
    line: int  # where the directive starts
    arg_lines: list[int]
    block: list[Statement] | None = None
    close_line: int = 0


_SPACE = " \t\r\n"
_SPACE_RUN = re.compile(r"[ \t\r\n]+")
_WORD_RUN = re.compile(r"[^ \t\r\n;{\\$]+")  # characters that need no decision inside a word
_QUOTED_RUN = {'"': re.compile(r'[^"\\\n]+'), "'": re.compile(r"[^'\\\n]+")}
_ESCAPES = {"t": "\t", "r": "\r", "n": "\n"}


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt in "\"'\\":
                out.append(nxt)
                i += 2
                continue
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text: str, path: str = "(text)") -> list[Token]:
    """Split configuration text into words and `;` `{` `}`, as ngx_conf_read_token does."""
    tokens: list[Token] = []
    line = 1
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            end = _SPACE_RUN.match(text, i).end()
            line += text.count("\n", i, end)
            i = end
            continue
        if ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in ";{}":
            tokens.append(Token(ch, ch, line))
            i += 1
            continue
        start_line = line
        if ch in "\"'":
            end, line = _skip_quoted(text, i + 1, ch, line, path)
            tokens.append(Token("word", _unescape(text[i + 1 : end]), start_line))
            i = end + 1
            # nginx: after a closing quote comes a space, ";" or "{" (or ")")
            if i < n and text[i] not in _SPACE + ";{)":
                raise UpstreamConfError(
                    path, line, f'unexpected "{text[i]}" right after a quoted parameter'
                )
            continue
        start = i
        variable = False  # just after "$": a "{" belongs to the word ("${name}")
        while i < n:
            plain = _WORD_RUN.match(text, i)
            if plain is not None:
                i = plain.end()
                variable = False
                if i >= n:
                    break
            c = text[i]
            if c == "$":
                variable = True
                i += 1
            elif c == "{" and variable:
                i += 1
            elif c == "\\":
                line += text[i + 1 : i + 2] == "\n"
                variable = False
                i += 2
            else:
                break  # whitespace, ";" or "{"
        tokens.append(Token("word", _unescape(text[start:i]), start_line))
    return tokens


def _skip_quoted(text: str, i: int, quote: str, line: int, path: str) -> tuple[int, int]:
    """Return where a quoted word that starts at `i` ends (its closing quote) and the line."""
    start_line = line
    run = _QUOTED_RUN[quote]
    while True:
        plain = run.match(text, i)
        if plain is not None:
            i = plain.end()
        if i >= len(text):
            raise UpstreamConfError(
                path, start_line, f"unterminated {quote} quote: the file ends inside it"
            )
        c = text[i]
        if c == "\\":
            line += text[i + 1 : i + 2] == "\n"
            i += 2
        elif c == "\n":
            line += 1
            i += 1
        else:
            return i, line


def read_statements(tokens: list[Token], path: str) -> list[Statement]:
    """Group tokens into directives and blocks; refuse what nginx's parser refuses."""
    root: list[Statement] = []
    stack: list[tuple[list[Statement], Statement | None]] = [(root, None)]
    words: list[Token] = []
    for token in tokens:
        if token.kind == "word":
            words.append(token)
            continue
        if token.kind == "}":
            if words:
                preview = " ".join(word.text for word in words[:2])
                raise UpstreamConfError(
                    path,
                    words[0].line,
                    f'"{preview}" is missing its ";" before the "}}" on line {token.line}',
                )
            if len(stack) == 1:
                raise UpstreamConfError(path, token.line, 'unexpected "}": no block is open')
            _, owner = stack.pop()
            assert owner is not None
            owner.close_line = token.line
            continue
        if not words:
            raise UpstreamConfError(path, token.line, f'unexpected "{token.kind}"')
        statement = Statement(
            name=words[0].text,
            args=[w.text for w in words[1:]],
            line=words[0].line,
            arg_lines=[w.line for w in words[1:]],
        )
        words = []
        stack[-1][0].append(statement)
        if token.kind == "{":
            statement.block = []
            stack.append((statement.block, statement))
    if words:
        raise UpstreamConfError(
            path, words[0].line, f'"{words[0].text}" is missing its ";" at the end of the file'
        )
    if len(stack) > 1:
        owner = stack[-1][1]
        assert owner is not None
        raise UpstreamConfError(
            path, owner.line, f'the "{owner.name}" block opened here is never closed with "}}"'
        )
    return root


# -- values ------------------------------------------------------------------------------------


def parse_number(text: str) -> int | None:
    """Return a non-negative decimal like ngx_atoi (digits only, no sign), or None."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_INT else None


# nginx time units, largest first; "ms" only where milliseconds are allowed.
_TIME_UNITS = (
    ("y", 365 * 86400),
    ("M", 30 * 86400),
    ("w", 7 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
)


def parse_time(text: str, *, seconds: bool = True) -> int | None:
    """Return a duration like ngx_parse_time: seconds (`seconds`) or milliseconds, or None.

    "10s", "1m", "1m30s", "1h 30m"; a plain number is seconds. Units go from larger to
    smaller, each at most once. "ms" is refused where nginx wants seconds (fail_timeout), and
    "y"/"M" where it wants milliseconds (keepalive_timeout).
    """
    order = [unit for unit, _ in _TIME_UNITS] + ["ms", " "]
    scales = dict(_TIME_UNITS)
    step = -1 if seconds else order.index("M")
    total = 0
    value = 0
    valid = False
    i = 0
    while i < len(text):
        ch = text[i]
        if "0" <= ch <= "9":
            value = value * 10 + int(ch)
            valid = True
            i += 1
            continue
        unit = ch
        if ch == "m" and text[i + 1 : i + 2] == "s":
            unit = "ms"
        if unit not in order:
            return None
        index = order.index(unit)
        if unit == "ms" and seconds:
            return None
        if unit == " " and step >= order.index("s"):
            return None
        if unit != " " and index <= step:
            return None
        step = index
        i += len(unit)
        if unit == "ms":
            scale = 1
        elif unit == " ":
            scale = 1 if seconds else 1000
        else:
            scale = scales[unit] * (1 if seconds else 1000)
        total += value * scale
        value = 0
        while i < len(text) and text[i] == " ":
            i += 1
    if not valid:
        return None
    total += value * (1 if seconds else 1000)
    return total if total <= MAX_INT else None


def parse_size(text: str) -> int | None:
    """Return a size like ngx_parse_size ("64k", "1m", "512"), or None."""
    if not text:
        return None
    scale = {"k": 1024, "K": 1024, "m": 1024**2, "M": 1024**2, "g": 1024**3, "G": 1024**3}
    digits, factor = text, 1
    if text[-1] in scale:
        digits, factor = text[:-1], scale[text[-1]]
    number = parse_number(digits)
    return None if number is None else number * factor
